package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves positional arguments behind the flags of the command
// they belong to, so "trace import --format azure FILE -o OUT" works:
// urfave/cli v2 stops reading flags at the first positional argument.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	var flags []cli.Flag = app.Flags
	i := 1
	// Walk the command path: leading words that name subcommands.
	for ; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			break
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		cmds, flags = next.Subcommands, next.Flags
		if len(cmds) == 0 {
			i++
			break
		}
	}
	var pos []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		out = append(out, a)
		if strings.Contains(a, "=") || isBoolFlag(flags, strings.TrimLeft(a, "-")) {
			continue
		}
		if i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

func isBoolFlag(flags []cli.Flag, name string) bool {
	if name == "help" || name == "h" || name == "version" || name == "v" {
		return true
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, ok := f.(*cli.BoolFlag)
				return ok
			}
		}
	}
	return false
}
