// Package report turns per-request records, whatever produced them, into
// latency metrics, comparison tables and plots.
package report
