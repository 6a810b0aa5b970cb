#!/usr/bin/env bash
# The bundled pretrained model, icefall style: run the stages from --stage to --stop-stage.
#   recipes/synthetic/run.sh                              stages 0-6: corpus, LM, voices, train, tune, package, evaluate
#   recipes/synthetic/run.sh --stage 3 --stop-stage 3     train only (resumes: run it again after a stop)
#   recipes/synthetic/run.sh --stage 5 --bundle-dir asr/assets   ship the result as the bundled model
# Stages: 0 corpus (prepare.py), 1 LM text (training sentences only) + KenLM 4-gram (8-bit), 2 speaker augmentation
# (tools/perturb_voices.py, WORLD vocoder): two sets of perturbed copies of the training set, 3 train from scratch
# on the training set and both sets of copies (with --avg N, then average its last N snapshots into avg.pt, which
# stages 4-5 then use instead of best.pt: tools/average_checkpoints.py; --avg-candidates 10,5,1 keeps the best on dev of
# the last 10, 5 and 1), 4 tune lm_weight / word_score on dev, 5 package (fp16 bundle + LM +
# lexicon), 6 evaluate the package on test and test_unseen_voice, greedy and beam+LM. Paths are relative to the
# repository root. Stage 3 takes about 8 minutes on one H100 and about 9 hours on 2 CPU cores. The shipped model
# had more rounds of stages 3-6, each in a new --exp-dir with the first round's --lm-dir and the previous round's
# best.pt as `init_from` in --train-args (README: How the shipped model was trained).
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=6
hours=25                            # corpus size (recipes/synthetic/conf/prepare.yaml)
seed=0                              # corpus seed: the sentence split, voices and augmentation (set 2 of the copies: seed + 1)
jobs=2                              # synthesis and voice-copy processes
data_dir=data/synthetic             # the corpus: manifests, wav/, summary.json, lm_train.txt, train_vc/, train_vc2/
exp_dir=exp/medium                  # best.pt, last.pt, metrics.jsonl, tb/, lm/, tune_lm.json, eval/
model=medium                        # conf/model preset
steps=9200                          # trainer.max_steps: the length of the learning-rate schedule (9,200 = 11.2 epochs of 51 h)
val_every=550                       # trainer.val_every: steps between validations on dev (best.pt)
avg=0                               # >0: stages 4-5 use the average of the run's last $avg snapshots (avg.pt), not best.pt
snapshot_every=100                  # trainer.snapshot_every when --avg > 0: steps between the snapshots averaged
avg_candidates=""                   # with --avg N, e.g. 10,5,1: average the last 10, 5 and 1 snapshots, keep the lowest dev WER
vc_fraction=0.4                     # stage 2: share of the training utterances that get a copy in set 1 (0: no set 1)
vc2_fraction=1.0                    # stage 2: share that get a copy in set 2, other voices (seed + 1; 0: no set 2)
lm_weights=1,1.5,2,2.5,3            # stage 4: the lm_weight values tried on dev (tools/tune_lm.py lm_weights)
word_scores=-2,-1,0,1,2             # stage 4: the word_score values tried with each (tools/tune_lm.py word_scores)
lm_dir=""                           # stage 1 output, read by stages 4 and 5 (default $exp_dir/lm)
bundle_dir=""                       # stage 5 output (default $exp_dir/bundle; asr/assets ships it)
train_args=""                       # more `python -m asr.train` overrides, e.g. "trainer.num_threads=2 data.num_workers=8"

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --val-every) val_every=$2; shift 2 ;;
    --avg) avg=$2; shift 2 ;;
    --snapshot-every) snapshot_every=$2; shift 2 ;;
    --avg-candidates) avg_candidates=$2; shift 2 ;;
    --vc-fraction) vc_fraction=$2; shift 2 ;;
    --vc2-fraction) vc2_fraction=$2; shift 2 ;;
    --lm-weights) lm_weights=$2; shift 2 ;;
    --word-scores) word_scores=$2; shift 2 ;;
    --lm-dir) lm_dir=$2; shift 2 ;;
    --bundle-dir) bundle_dir=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --stage --stop-stage --hours --seed --jobs --data-dir --exp-dir --model --steps --val-every --avg --snapshot-every --avg-candidates --vc-fraction --vc2-fraction --lm-weights --word-scores --lm-dir --bundle-dir --train-args)" >&2; exit 2 ;;
  esac
done
bundle_dir=${bundle_dir:-$exp_dir/bundle}
lm_dir=${lm_dir:-$exp_dir/lm}
manifests=$data_dir/train.jsonl     # stage 3 trains on these (comma-separated)
[ "$vc_fraction" = 0 ] || manifests="$manifests,$data_dir/train_vc/manifest.jsonl"
[ "$vc2_fraction" = 0 ] || manifests="$manifests,$data_dir/train_vc2/manifest.jsonl"

snapshots=""                        # stage 3: what --avg averages
[ "$avg" = 0 ] || snapshots="trainer.snapshot_every=$snapshot_every trainer.keep_snapshots=$avg"
model_file=$exp_dir/best.pt         # stages 4-5: the model to tune the LM for and to package
[ "$avg" = 0 ] || model_file=$exp_dir/avg.pt

. recipes/lib.sh                    # log, tuned_lm_overrides

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: ${hours} h corpus in $data_dir (seed $seed)"
  python recipes/synthetic/prepare.py out_dir=$data_dir hours=$hours seed=$seed jobs=$jobs
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: LM text (training sentences only) and 8-bit KenLM 4-gram in $lm_dir"
  python recipes/synthetic/lm_text.py out=$data_dir/lm_train.txt out_dir=$data_dir seed=$seed
  python tools/build_lm.py $data_dir/lm_train.txt $lm_dir --quantize 8
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: perturbed voices: set 1 for $vc_fraction of the training set (seed $seed), set 2 for $vc2_fraction (seed $((seed + 1)))"
  [ "$vc_fraction" = 0 ] || python tools/perturb_voices.py $data_dir/train.jsonl -o $data_dir/train_vc --fraction $vc_fraction --seed $seed --jobs $jobs
  [ "$vc2_fraction" = 0 ] || python tools/perturb_voices.py $data_dir/train.jsonl -o $data_dir/train_vc2 --fraction $vc2_fraction --seed $((seed + 1)) --jobs $jobs
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: train model=$model for $steps steps on $manifests into $exp_dir"
  # shellcheck disable=SC2086  # train_args is a list of overrides
  python -m asr.train data=synthetic model=$model out_dir=$exp_dir resume=true "data.train_manifest=[$manifests]" \
    data.dev_manifest=$data_dir/dev.jsonl trainer.max_steps=$steps trainer.val_every=$val_every \
    trainer.patience=0 $snapshots $train_args
  if [ "$avg" -gt 0 ]; then
    log "stage 3: average the last $avg snapshots into $exp_dir/avg.pt${avg_candidates:+ (candidates: the last $avg_candidates)}"
    newest=$(cd "$exp_dir/snapshots" && ls step-*.pt | sort -t- -k2 -n | tail -n "$avg" | sed "s|^|$exp_dir/snapshots/|")
    # shellcheck disable=SC2086  # the newest $avg snapshots, oldest first
    python tools/average_checkpoints.py $newest -o "$exp_dir/avg.pt" --dev $data_dir/dev.jsonl \
      ${avg_candidates:+--candidates $avg_candidates}
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: tune lm_weight [$lm_weights] and word_score [$word_scores] on dev"
  python tools/tune_lm.py manifest=$data_dir/dev.jsonl model=$model_file lm=$lm_dir/lm.bin \
    lexicon=$lm_dir/lexicon.txt "lm_weights=[$lm_weights]" "word_scores=[$word_scores]" max_utterances=500 \
    out=$exp_dir/tune_lm.json
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: package $model_file with the LM into $bundle_dir"
  python tools/package_model.py $model_file --corpus $data_dir --lm $lm_dir --lm-text $data_dir/lm_train.txt \
    --out $bundle_dir
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  beam=(decoder=beam decoder.lm=$bundle_dir/lm.bin decoder.lexicon=$bundle_dir/lexicon.txt)
  beam+=($(tuned_lm_overrides "$exp_dir/tune_lm.json"))  # the tuned pair, else conf/decoder/beam.yaml's
  for set in test test_unseen_voice; do
    log "stage 6: evaluate $bundle_dir/model.pt on $set, greedy and ${beam[*]}"
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$bundle_dir/model.pt report_dir=$exp_dir/eval/$set-greedy
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$bundle_dir/model.pt "${beam[@]}" \
      report_dir=$exp_dir/eval/$set-beam
  done
  grep -H '"wer"\|"cer"' $exp_dir/eval/*/summary.json || true
fi
