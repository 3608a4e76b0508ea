#!/usr/bin/env bash
# The searcher x benchmark table of docs/search-quality.md: random search, regularized evolution and the
# predictor-guided presets at equal query budgets, 50 seeds (100-149) each, then one markdown table of them all.
#   NASSEARCH_DATA=... bash experiments/search_quality.sh [OUT_DIR]     (default: runs/search_quality)
# Set STAGE=cheap to run only random search and regularized evolution (a minute or two), STAGE=guided for the
# rest (about 1.5 h on 2 cores). Every run is an ordinary `nassearch run`: an existing run directory is
# resumed, so a killed script continues where it stopped.
set -euo pipefail
OUT=${1:-runs/search_quality}
STAGE=${STAGE:-all}
COMMON=(--repeats 50 --set seed=100 --set "output.dir=$OUT" --set output.progress=false)

search() {  # NAME CONFIG [--set ...]: run (or resume) one run directory
    local name=$1 config=$2
    shift 2
    if [ -f "$OUT/$name/summary.json" ]; then return; fi
    local resume=()
    if [ -d "$OUT/$name" ]; then resume=(--resume "$OUT/$name"); fi
    nassearch run "$config" "${COMMON[@]}" --set "name=$name" "$@" "${resume[@]}" > /dev/null
}

for dataset in cifar10 cifar100 ImageNet16-120; do
    for queries in 100 150 250; do
        tag=${dataset}_${queries}
        set_budget=(--set "evaluator.dataset=$dataset" --set "budget.evaluations=$queries")
        if [ "$STAGE" != guided ]; then
            search "nb201_random_$tag" experiments/nb201_random.yaml "${set_budget[@]}"
            search "nb201_regevo_$tag" experiments/nb201_regevo.yaml "${set_budget[@]}"
        fi
        if [ "$STAGE" != cheap ]; then
            search "nb201_guided_$tag" experiments/nb201_guided.yaml "${set_budget[@]}"
        fi
    done
done
if [ "$STAGE" != guided ]; then
    search nb101_random experiments/nb101_random.yaml
    search nb101_regevo experiments/nb101_regevo.yaml
    search darts_random experiments/darts_random.yaml
    search darts_regevo experiments/darts_regevo.yaml
fi
if [ "$STAGE" != cheap ]; then
    search nb101_guided experiments/nb101_guided.yaml
    search darts_guided experiments/darts_guided.yaml
fi
nassearch compare "$OUT"/*/
