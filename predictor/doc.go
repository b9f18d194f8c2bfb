// Package predictor supplies the output-length predictions ISRTF schedules
// by: an oracle, a noisy oracle with a set error, predictions recorded in a
// trace, and a constant. Each reports the cost a real predictor would add to
// a scheduler step.
package predictor
