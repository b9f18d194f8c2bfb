package sim

import "sort"

func sortFloats(x []float64) { sort.Float64s(x) }
