// Package report turns per-request records, whatever produced them, into
// latency metrics, comparison tables, run files and plots. Records may be
// kept and summarised at once (Summarize) or given one at a time as a run
// finishes them (Summarizer, RunWriter), so that a run of millions of
// requests holds a few numbers a request rather than its records.
package report
