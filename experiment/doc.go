// Package experiment runs grids of simulations kept as files: a spec
// (YAML or JSON, read strictly, errors naming their line) names the
// workloads, loads, seeds, the flags every cell shares and the flags it
// varies; the grid expands into cells, each keyed by a hash of everything
// that determines its result (the binary, the workload's content, the
// load, the seed and every flag), and each finished cell is one record
// file written atomically. A rerun skips the cells already recorded, a
// changed axis reruns only the cells it changes, a shard (I/N, or a Slurm
// array or Kubernetes Indexed Job index) runs a deterministic share, and
// Gather brings shards' records back together. Sweep binds each cell to a
// simulation set up by package setup, the code "elis-sim run" uses, and
// WriteReports turns the records into each workload's tables and plots.
package experiment
