package gpu

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// AvailableMemory is the host memory free for new work (MemAvailable from
// /proc/meminfo), in bytes; 0 when unknown. A CPU executor's budget comes
// from it.
func AvailableMemory() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
