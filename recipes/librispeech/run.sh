#!/usr/bin/env bash
# LibriSpeech 960 h, icefall style: run the stages from --stage to --stop-stage.
#   recipes/librispeech/run.sh                          all stages
#   recipes/librispeech/run.sh --stage 2 --stop-stage 2 train only
#   NGPU=8 recipes/librispeech/run.sh --stage 2         train on 8 GPUs
# Stages: 0 download + MD5 check + extract, 1 manifests, 2 train (torchrun), 3 evaluate every dev/test set.
# Run from anywhere; paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=3
dl_dir=data/librispeech/download    # archives and LibriSpeech/<subset>/
data_dir=data/librispeech           # manifests: <subset>.jsonl, train-960.jsonl
exp_dir=exp/librispeech             # best.pt, last.pt, metrics.jsonl, eval/<set>/
model=large                         # conf/model preset
decoder=greedy                      # greedy | beam (conf/decoder)
jobs=2                              # processes for manifest preparation
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l || true)}
[ "${NGPU:-0}" -gt 0 ] || NGPU=1    # no GPU: one CPU process (gloo)

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --decoder) decoder=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --stage N --stop-stage N --model NAME --decoder NAME --exp-dir DIR)" >&2; exit 2 ;;
  esac
done

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: download LibriSpeech into $dl_dir (resumable, MD5-checked)"
  python recipes/librispeech/download.py dl_dir=$dl_dir
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: manifests in $data_dir"
  python recipes/librispeech/prepare.py corpus_dir=$dl_dir/LibriSpeech out_dir=$data_dir jobs=$jobs
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: train model=$model on $NGPU process(es) into $exp_dir"
  torchrun --nproc_per_node=$NGPU -m asr.train data=librispeech model=$model out_dir=$exp_dir resume=true \
    data.train_manifest=$data_dir/train-960.jsonl data.dev_manifest=$data_dir/dev-clean.jsonl
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for set in dev-clean dev-other test-clean test-other; do
    log "stage 3: evaluate $set with decoder=$decoder"
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$exp_dir/best.pt decoder=$decoder \
      report_dir=$exp_dir/eval/$set-$decoder
  done
  grep -H '"wer"' $exp_dir/eval/*-$decoder/summary.json || true
fi
