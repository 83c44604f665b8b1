// Command alterhost serves a folder of WebAssembly plugins as MCP tools.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "plugin" && os.Args[2] == "embed" {
		if err := runEmbed(os.Args[3:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "alterhost:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "alterhost: not yet wired")
	os.Exit(2)
}
