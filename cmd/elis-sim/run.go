package main

import "github.com/urfave/cli/v2"

func runCommand() *cli.Command {
	return usageErrors(&cli.Command{Name: "run", Usage: "simulate a trace under scheduling policies", Action: func(*cli.Context) error { return nil }})
}
