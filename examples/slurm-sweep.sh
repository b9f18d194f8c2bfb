#!/bin/bash
# One shard of an elis-sim sweep per Slurm array task. elis-sim reads the
# task's index and count from SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
# SLURM_ARRAY_TASK_COUNT; each task writes its own directory, and a task
# that is requeued or rerun skips the cells it already finished.
#
#   sbatch --array=0-3 examples/slurm-sweep.sh examples/sweep.yaml results
#   elis-sim sweep merge results/shard-*/ -o results/all     # when all are done
#
#SBATCH --job-name=elis-sweep
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=elis-sweep-%A_%a.log
set -euo pipefail
spec=${1:?usage: sbatch --array=0-N slurm-sweep.sh SPEC OUTDIR}
out=${2:?usage: sbatch --array=0-N slurm-sweep.sh SPEC OUTDIR}
: "${SLURM_ARRAY_TASK_ID:?run it as an array job: sbatch --array=0-3 ...}"
exec "${ELIS_SIM:-elis-sim}" sweep --spec "$spec" --parallel "${SLURM_CPUS_PER_TASK:-1}" \
	-o "$out/shard-$SLURM_ARRAY_TASK_ID"
