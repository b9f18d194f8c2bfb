package report

import (
	"math"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Estimate is a mean over repeated runs (seeds) with the half-width of
// its 95% confidence interval (Student's t); CI is NaN for a single run.
type Estimate struct {
	Mean float64 `json:"mean"`
	CI95 Num     `json:"ci95"`
	N    int     `json:"n"`
}

// MeanCI estimates the mean of x with a 95% confidence interval.
func MeanCI(x []float64) Estimate {
	e := Estimate{N: len(x), CI95: Num(math.NaN()), Mean: math.NaN()}
	if len(x) == 0 {
		return e
	}
	mean, std := stat.MeanStdDev(x, nil)
	e.Mean = mean
	if len(x) > 1 {
		t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(len(x) - 1)}.Quantile(0.975)
		e.CI95 = Num(t * std / math.Sqrt(float64(len(x))))
	}
	return e
}
