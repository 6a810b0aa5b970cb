#!/usr/bin/env bash
# The bundled pretrained model, icefall style: run the stages from --stage to --stop-stage.
#   recipes/synthetic/run.sh                              stages 0-6: corpus, LM, train, voices, tune, package, evaluate
#   recipes/synthetic/run.sh --stage 2 --stop-stage 2     train only (resumes: run it again after a stop)
#   recipes/synthetic/run.sh --stage 5 --bundle-dir asr/assets   ship the result as the bundled model
# Stages: 0 corpus (prepare.py), 1 LM text (training sentences only) + KenLM 4-gram (8-bit), 2 train,
# 3 speaker augmentation (tools/perturb_voices.py, WORLD vocoder), in two rounds: copies of part of the
# training set and fine-tuning stage 2's model on both (skipped with --vc-epochs 0), then a second, full
# set of copies and fine-tuning round 1's model on all three (skipped with --vc2-steps 0), 4 tune lm_weight / word_score
# on dev, 5 package (fp16 bundle + LM + lexicon), 6 evaluate the package on test and
# test_unseen_voice, greedy and beam+LM. Paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."

stage=0
stop_stage=6
hours=25                            # corpus size (recipes/synthetic/conf/prepare.yaml)
seed=0                              # corpus seed: the sentence split, voices and augmentation
jobs=2                              # synthesis processes
data_dir=data/synthetic             # the corpus: manifests, wav/, summary.json, lm_train.txt
exp_dir=exp/small                   # best.pt, last.pt, metrics.jsonl, lm/; vc/ and vc2/ (stage 3's rounds: the same, tune_lm.json, eval/)
model=small                         # conf/model preset
epochs=23                           # trainer.max_epochs
vc_fraction=0.4                     # stage 3: share of the training utterances that get a perturbed copy
vc_epochs=3                         # stage 3: fine-tuning epochs over train + copies (0: no stage 3)
vc_lr=3e-4                          # stage 3: peak learning rate of both fine-tunings (100 warm-up steps, cosine)
vc2_fraction=1.0                    # stage 3, round 2: share of the training utterances that get a second copy (seed + 1)
vc2_steps=1400                      # stage 3, round 2: fine-tuning steps over train + both sets of copies (0: no round 2)
bundle_dir=""                       # stage 5 output (default $exp_dir/bundle; asr/assets ships it)
train_args=""                       # more `python -m asr.train` overrides, e.g. "trainer.num_threads=2"

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
    --epochs) epochs=$2; shift 2 ;;
    --vc-fraction) vc_fraction=$2; shift 2 ;;
    --vc-epochs) vc_epochs=$2; shift 2 ;;
    --vc-lr) vc_lr=$2; shift 2 ;;
    --vc2-fraction) vc2_fraction=$2; shift 2 ;;
    --vc2-steps) vc2_steps=$2; shift 2 ;;
    --bundle-dir) bundle_dir=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    *) echo "unknown option $1 (known: --stage --stop-stage --hours --seed --jobs --data-dir --exp-dir --model --epochs --vc-fraction --vc-epochs --vc-lr --vc2-fraction --vc2-steps --bundle-dir --train-args)" >&2; exit 2 ;;
  esac
done
bundle_dir=${bundle_dir:-$exp_dir/bundle}
lm_dir=$exp_dir/lm
model_dir=$exp_dir                  # the run whose best.pt stages 4-6 use: stage 3's last round when it runs
[ "$vc_epochs" = 0 ] || model_dir=$exp_dir/vc
[ "$vc_epochs" = 0 ] || [ "$vc2_steps" = 0 ] || model_dir=$exp_dir/vc2

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

# fine_tune OUT_DIR INIT_FROM MANIFESTS LENGTH VAL_EVERY: stage 3's fine-tuning of a model on the training set plus
# copies (MANIFESTS: a comma-separated list; LENGTH: trainer.max_epochs=N or trainer.max_steps=N)
fine_tune() {
  local out=$1 init=$2 manifests=$3 length=$4 val_every=$5
  # shellcheck disable=SC2086  # train_args is a list of overrides
  python -m asr.train data=synthetic model=$model out_dir=$out resume=true init_from=$init "data.train_manifest=[$manifests]" \
    data.dev_manifest=$data_dir/dev.jsonl optim.lr=$vc_lr optim.warmup_steps=100 $length trainer.val_every=$val_every $train_args
}

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
  log "stage 2: train model=$model for $epochs epochs into $exp_dir"
  # shellcheck disable=SC2086  # train_args is a list of overrides
  python -m asr.train data=synthetic model=$model out_dir=$exp_dir resume=true trainer.max_epochs=$epochs \
    data.train_manifest=$data_dir/train.jsonl data.dev_manifest=$data_dir/dev.jsonl $train_args
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ] && [ "$vc_epochs" != 0 ]; then
  log "stage 3: perturbed voices for $vc_fraction of the training set, fine-tune $exp_dir/best.pt into $exp_dir/vc"
  python tools/perturb_voices.py $data_dir/train.jsonl -o $data_dir/train_vc --fraction $vc_fraction --seed $seed --jobs $jobs
  fine_tune $exp_dir/vc $exp_dir/best.pt "$data_dir/train.jsonl,$data_dir/train_vc/manifest.jsonl" \
    trainer.max_epochs=$vc_epochs 250
  if [ "$vc2_steps" != 0 ]; then
    log "stage 3, round 2: perturbed voices for $vc2_fraction of the training set (seed $((seed + 1))), fine-tune $exp_dir/vc/best.pt into $model_dir"
    python tools/perturb_voices.py $data_dir/train.jsonl -o $data_dir/train_vc2 --fraction $vc2_fraction --seed $((seed + 1)) --jobs $jobs
    fine_tune $model_dir $exp_dir/vc/best.pt \
      "$data_dir/train.jsonl,$data_dir/train_vc/manifest.jsonl,$data_dir/train_vc2/manifest.jsonl" trainer.max_steps=$vc2_steps 200
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: tune lm_weight and word_score on dev"
  python tools/tune_lm.py manifest=$data_dir/dev.jsonl model=$model_dir/best.pt lm=$lm_dir/lm.bin \
    lexicon=$lm_dir/lexicon.txt "lm_weights=[1,1.5,2,2.5,3]" "word_scores=[-1,0,1,2]" max_utterances=500 \
    out=$model_dir/tune_lm.json
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: package $model_dir/best.pt with the LM into $bundle_dir"
  python tools/package_model.py $model_dir/best.pt --corpus $data_dir --lm $lm_dir --lm-text $data_dir/lm_train.txt \
    --out $bundle_dir
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  beam=(decoder=beam decoder.lm=$bundle_dir/lm.bin decoder.lexicon=$bundle_dir/lexicon.txt)
  if [ -f "$model_dir/tune_lm.json" ]; then  # the tuned pair, else conf/decoder/beam.yaml's
    beam+=($(python -c 'import json, sys; b = json.load(open(sys.argv[1]))["best"]
print("decoder.lm_weight=%s decoder.word_score=%s" % (b["lm_weight"], b["word_score"]))' "$model_dir/tune_lm.json"))
  fi
  for set in test test_unseen_voice; do
    log "stage 6: evaluate $bundle_dir/model.pt on $set, greedy and ${beam[*]}"
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$bundle_dir/model.pt report_dir=$model_dir/eval/$set-greedy
    python -m asr.evaluate manifest=$data_dir/$set.jsonl model=$bundle_dir/model.pt "${beam[@]}" \
      report_dir=$model_dir/eval/$set-beam
  done
  grep -H '"wer"\|"cer"' $model_dir/eval/*/summary.json || true
fi
