package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/alterhost/alterhost/internal/pluginbuild"
	"github.com/alterhost/alterhost/internal/scaffold"
)

// runNew scaffolds a plugin: `alterhost plugin new --lang L NAME`.
func runNew(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost plugin new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lang := fs.String("lang", "", fmt.Sprintf("the plugin's `LANGUAGE`: %s", langList(scaffold.Langs())))
	dir := fs.String("dir", "", "write it into `DIR` (default: ./NAME)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost plugin new --lang LANGUAGE [--dir DIR] NAME")
		fmt.Fprintln(stderr, "\nWrites a buildable plugin: a manifest, two starting tools and the language's binding.")
		fs.PrintDefaults()
	}
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *lang == "" {
		fs.Usage()
		return errors.New("new needs --lang and a plugin name")
	}
	name := fs.Arg(0)
	if *dir == "" {
		*dir = name
	}
	files, err := scaffold.New(*dir, name, pluginbuild.Lang(*lang))
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stdout, filepath.Join(*dir, f))
	}
	fmt.Fprintf(stdout, "\nNext: alterhost plugin build %s\n", *dir)
	return nil
}

// runBuild builds a plugin folder: `alterhost plugin build [DIR]`.
func runBuild(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alterhost plugin build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lang := fs.String("lang", "", fmt.Sprintf("the sources' `LANGUAGE`: %s (default: from the files)", langList(pluginbuild.Langs())))
	out := fs.String("o", "", "write the plugin to `FILE` (default: DIR/NAME.wasm, NAME from alter.json)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: alterhost plugin build [--lang LANGUAGE] [-o FILE.wasm] [DIR]")
		fmt.Fprintln(stderr, "\nCompiles DIR (default .) with its language's toolchain and embeds DIR/alter.json.")
		fs.PrintDefaults()
	}
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errors.New("build takes one folder")
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	l := pluginbuild.Lang(*lang)
	if l == "" {
		var err error
		if l, err = pluginbuild.Detect(dir); err != nil {
			return err
		}
	}
	if *out == "" {
		raw, err := os.ReadFile(filepath.Join(dir, "alter.json"))
		if err != nil {
			return fmt.Errorf("plugin source %s: %w", dir, err)
		}
		var m struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &m) != nil || m.Name == "" || strings.ContainsAny(m.Name, `/\`) {
			m.Name = filepath.Base(dir) // Run reports what is wrong with the manifest
		}
		*out = filepath.Join(dir, m.Name+".wasm")
	}
	err := pluginbuild.Run(context.Background(), pluginbuild.Build{Lang: l, Dir: dir, Out: *out, Root: pluginbuild.FindRoot(dir)})
	if err != nil {
		return err
	}
	fi, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s (%s, %d bytes)\n", *out, l, fi.Size())
	return nil
}

func langList[L ~string](ls []L) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

// parseInterspersed parses flags given before or after the positional
// arguments, as people type `plugin new NAME --lang go` as often as not.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(positional)
}
