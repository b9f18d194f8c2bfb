// Package setup turns what a user says -- a command's flags, a sweep
// spec's settings, a server's flags -- into the typed, validated configs
// of the scheduler core and its drivers (the simulator, replay, serve).
// It holds, in one place, everything that must mean the same in every
// command: each command's options with their defaults and help, declared
// in tables beside the code that reads them (Flags for a run, ServeFlags,
// BenchFlags, ReplayFlags...), the policy grammar NAME[/MODE][+GUARD...]
// (ParsePolicy), the predictor and engine settings, the labels runs are
// shown under, and the catalogue of embedded workloads and scenarios; and
// from them each command's config (ParseSim, ParseReplay, ParseServe,
// ParseBench, DeviceProfile, ParseGen...), its outputs checked first. Options are read through a small interface
// that a urfave/cli context satisfies as it is and that Values implements
// over a spec's map of settings, so a sweep's cell is set up by the very
// code that sets up "elis-sim run". Bad input comes back as *Error, which
// a command maps to exit status 2 without validating anything first.
package setup
