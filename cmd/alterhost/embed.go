package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/alterhost/alterhost/abi"
)

// runEmbed writes a copy of a Wasm module with a validated manifest in its
// alter.manifest custom section, making the module a complete plugin.
func runEmbed(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost plugin pack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the plugin here (default: replace `FILE.wasm`)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost plugin pack [-o OUT.wasm] FILE.wasm MANIFEST.json")
		fmt.Fprintln(stderr, "\nValidates MANIFEST.json and stores it in the module's alter.manifest section.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("embed needs a module and a manifest")
	}
	wasmPath, manifestPath := fs.Arg(0), fs.Arg(1)
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	if _, err := abi.ParseManifest(manifestPath, raw); err != nil {
		return err
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	withManifest, err := abi.AppendCustomSection(wasm, abi.ManifestSection, raw)
	if err != nil {
		return fmt.Errorf("%s: %w", wasmPath, err)
	}
	if *out == "" {
		*out = wasmPath
	}
	if err := os.WriteFile(*out, withManifest, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "embedded %s into %s\n", manifestPath, *out)
	return nil
}
