#!/usr/bin/env bash
# LibriSpeech 960 h, icefall style: run the stages from --stage to --stop-stage.
#   recipes/librispeech/run.sh                          all stages
#   recipes/librispeech/run.sh --stage 3 --stop-stage 3 train only
#   NGPU=8 recipes/librispeech/run.sh --stage 3         train on 8 GPUs, then tune the LM and evaluate
# Stages: 0 download + MD5 check + extract, 1 manifests, 2 KenLM 4-gram (the training transcripts, or --lm-text),
# 3 train (torchrun), 4 tune lm_weight / word_score on dev-clean, 5 evaluate every dev/test set, greedy and beam+LM.
# Run from anywhere; paths are relative to the repository root. Calls `python`: activate the environment first.
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=5
dl_dir=data/librispeech/download    # archives and LibriSpeech/<subset>/
data_dir=data/librispeech           # manifests: <subset>.jsonl, train-960.jsonl
exp_dir=exp/librispeech             # best.pt, last.pt, metrics.jsonl, lm/, tune_lm.json, eval/<set>-<decoder>/
model=large                         # conf/model preset
train_set=train-960                 # the manifest stage 3 trains on (e.g. train-clean-100)
lm_text=""                          # stage 2: a text to build the LM from (e.g. OpenSLR 11's librispeech-lm-norm.txt);
                                    #   default: the transcripts of $train_set
lm_args="--quantize 8"              # more tools/build_lm.py options (e.g. "--prune 0 1 1 --quantize 8")
lm_weights=0.5,1,1.5,2              # stage 4: the lm_weight values tried on dev-clean (tools/tune_lm.py lm_weights)
word_scores=-1,0,1,2                # stage 4: the word_score values tried with each
train_args=""                       # more `python -m asr.train` overrides
jobs=2                              # processes for manifest preparation
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l || true)}
[ "${NGPU:-0}" -gt 0 ] || NGPU=1    # no GPU: one CPU process (gloo)

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dl-dir) dl_dir=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --train-set) train_set=$2; shift 2 ;;
    --lm-text) lm_text=$2; shift 2 ;;
    --lm-args) lm_args=$2; shift 2 ;;
    --lm-weights) lm_weights=$2; shift 2 ;;
    --word-scores) word_scores=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --stage --stop-stage --dl-dir --data-dir --exp-dir --model --train-set --lm-text --lm-args --lm-weights --word-scores --train-args --jobs)" >&2; exit 2 ;;
  esac
done
lm_dir=$exp_dir/lm

. recipes/lib.sh                    # log, tuned_lm_overrides

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: download LibriSpeech into $dl_dir (resumable, MD5-checked)"
  python recipes/librispeech/download.py dl_dir=$dl_dir
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: manifests in $data_dir"
  python recipes/librispeech/prepare.py corpus_dir=$dl_dir/LibriSpeech out_dir=$data_dir jobs=$jobs
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  text=${lm_text:-$data_dir/$train_set.jsonl}
  log "stage 2: KenLM 4-gram of $text in $lm_dir"
  # shellcheck disable=SC2086  # lm_args is a list of options
  python tools/build_lm.py "$text" $lm_dir $lm_args
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: train model=$model on $train_set, $NGPU process(es), into $exp_dir"
  # shellcheck disable=SC2086  # train_args is a list of overrides
  torchrun --nproc_per_node=$NGPU -m asr.train data=librispeech model=$model out_dir=$exp_dir resume=true \
    data.train_manifest=$data_dir/$train_set.jsonl data.dev_manifest=$data_dir/dev-clean.jsonl $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: tune lm_weight [$lm_weights] and word_score [$word_scores] on dev-clean"
  python tools/tune_lm.py manifest=$data_dir/dev-clean.jsonl model=$exp_dir/best.pt lm=$lm_dir/lm.bin \
    lexicon=$lm_dir/lexicon.txt "lm_weights=[$lm_weights]" "word_scores=[$word_scores]" max_utterances=500 \
    out=$exp_dir/tune_lm.json
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  beam=(decoder=beam decoder.lm=$lm_dir/lm.bin decoder.lexicon=$lm_dir/lexicon.txt)
  beam+=($(tuned_lm_overrides "$exp_dir/tune_lm.json"))  # the tuned pair, else conf/decoder/beam.yaml's
  for set in dev-clean dev-other test-clean test-other; do
    if [ ! -f "$data_dir/$set.jsonl" ]; then
      log "stage 5: no $data_dir/$set.jsonl, skipped"
      continue
    fi
    log "stage 5: evaluate $exp_dir/best.pt on $set, greedy and ${beam[*]}"
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$exp_dir/best.pt report_dir=$exp_dir/eval/$set-greedy
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$exp_dir/best.pt "${beam[@]}" \
      report_dir=$exp_dir/eval/$set-beam
  done
  grep -H '"wer"\|"cer"' $exp_dir/eval/*/summary.json || true
fi
