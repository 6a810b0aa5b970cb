#!/usr/bin/env bash
# Common Voice (one locale), icefall style: run the stages from --stage to --stop-stage.
#   recipes/commonvoice/run.sh --url 'https://...' --sha256 HEX        everything, from the dataset page's signed link
#   recipes/commonvoice/run.sh --archive ~/Downloads/cv-corpus-17.0-2024-03-15-en.tar.gz
#   NGPU=8 recipes/commonvoice/run.sh --stage 3                        train on 8 GPUs, then tune and evaluate
# Stages: 0 download or take the archive, check it, extract it; 1 manifests (MP3 -> 16 kHz FLAC); 2 KenLM 4-gram on
# the training sentences only; 3 train (torchrun); 4 tune lm_weight / word_score on dev; 5 evaluate dev and test,
# greedy and beam+LM. Run from anywhere; paths are relative to the repository root. Calls `python`: activate the
# environment first.
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=5
url=""                              # stage 0: the signed download link from the dataset page (quote it)
archive=""                          # stage 0: or an archive already downloaded
sha256=""                           # stage 0: the archive's SHA-256 from the dataset page (empty: printed, not checked)
locale=en                           # the locale folder inside the release (cv-corpus-*/<locale>/)
dl_dir=data/commonvoice/download    # the archive and the extracted release
corpus_dir=""                       # the release's locale folder (default: the newest cv-corpus-*/$locale in $dl_dir)
data_dir=data/commonvoice           # manifests <split>.jsonl and the converted audio/
exp_dir=exp/commonvoice             # best.pt, last.pt, metrics.jsonl, lm/, tune_lm.json, eval/<set>-<decoder>/
model=large                         # conf/model preset
jobs=2                              # processes converting clips
train_set=train                     # train (train.tsv) | train_validated (validated.tsv less dev/test clips, speakers, sentences)
lm_args="--quantize 8"              # more tools/build_lm.py options (e.g. "--prune 0 1 1 --quantize 8")
lm_weights=0.5,1,1.5,2              # stage 4: the lm_weight values tried on dev (tools/tune_lm.py lm_weights)
word_scores=-1,0,1,2                # stage 4: the word_score values tried with each
train_args=""                       # more `python -m asr.train` overrides, e.g. "trainer.max_steps=100000"
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l || true)}
[ "${NGPU:-0}" -gt 0 ] || NGPU=1    # no GPU: one CPU process (gloo)

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --url) url=$2; shift 2 ;;
    --archive) archive=$2; shift 2 ;;
    --sha256) sha256=$2; shift 2 ;;
    --locale) locale=$2; shift 2 ;;
    --dl-dir) dl_dir=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --train-set) train_set=$2; shift 2 ;;
    --lm-args) lm_args=$2; shift 2 ;;
    --lm-weights) lm_weights=$2; shift 2 ;;
    --word-scores) word_scores=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --stage --stop-stage --url --archive --sha256 --locale --dl-dir --corpus-dir --data-dir --exp-dir --model --jobs --train-set --lm-args --lm-weights --word-scores --train-args)" >&2; exit 2 ;;
  esac
done
lm_dir=$exp_dir/lm
case "$train_set" in
  train) validated=false ;;
  train_validated) validated=true ;;
  *) echo "--train-set must be train or train_validated, not $train_set" >&2; exit 2 ;;
esac

. recipes/lib.sh                    # log, tuned_lm_overrides

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -z "$url" ] && [ -z "$archive" ] && [ -n "$(ls -d "$dl_dir"/cv-corpus-*/"$locale" 2>/dev/null)" ]; then
    log "stage 0: a release is already extracted in $dl_dir, nothing to download"
  else
    log "stage 0: download and extract Common Voice into $dl_dir"
    python recipes/commonvoice/download.py dl_dir="$dl_dir" ${url:+url="$url"} ${archive:+archive="$archive"} \
      ${sha256:+sha256=$sha256}
  fi
fi

if [ -z "$corpus_dir" ]; then
  corpus_dir=$(ls -d "$dl_dir"/cv-corpus-*/"$locale" 2>/dev/null | sort -V | tail -n 1 || true)
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  [ -n "$corpus_dir" ] || { echo "error: no cv-corpus-*/$locale folder in $dl_dir (run stage 0, or pass --corpus-dir)" >&2; exit 1; }
  log "stage 1: manifests of $corpus_dir in $data_dir"
  python recipes/commonvoice/prepare.py corpus_dir="$corpus_dir" out_dir=$data_dir jobs=$jobs validated_train=$validated
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: KenLM 4-gram of the $train_set sentences in $lm_dir"
  # shellcheck disable=SC2086  # lm_args is a list of options
  python tools/build_lm.py $data_dir/$train_set.jsonl $lm_dir $lm_args
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: train model=$model on $train_set, $NGPU process(es), into $exp_dir"
  # shellcheck disable=SC2086  # train_args is a list of overrides
  torchrun --nproc_per_node=$NGPU -m asr.train data=commonvoice model=$model out_dir=$exp_dir resume=true \
    data.train_manifest=$data_dir/$train_set.jsonl data.dev_manifest=$data_dir/dev.jsonl $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: tune lm_weight [$lm_weights] and word_score [$word_scores] on dev"
  python tools/tune_lm.py manifest=$data_dir/dev.jsonl model=$exp_dir/best.pt lm=$lm_dir/lm.bin \
    lexicon=$lm_dir/lexicon.txt "lm_weights=[$lm_weights]" "word_scores=[$word_scores]" max_utterances=500 \
    out=$exp_dir/tune_lm.json
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  beam=(decoder=beam decoder.lm=$lm_dir/lm.bin decoder.lexicon=$lm_dir/lexicon.txt)
  beam+=($(tuned_lm_overrides "$exp_dir/tune_lm.json"))  # the tuned pair, else conf/decoder/beam.yaml's
  for set in dev test; do
    log "stage 5: evaluate $exp_dir/best.pt on $set, greedy and ${beam[*]}"
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$exp_dir/best.pt "group_by=[accent,gender,age]" \
      report_dir=$exp_dir/eval/$set-greedy
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$exp_dir/best.pt "group_by=[accent,gender,age]" \
      "${beam[@]}" report_dir=$exp_dir/eval/$set-beam
  done
  grep -H '"wer"\|"cer"' $exp_dir/eval/*/summary.json || true
fi
