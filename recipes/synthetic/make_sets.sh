#!/usr/bin/env bash
# Every training set of the shipped model (round 29) and of the rounds after it, made from nothing, in order, with the
# commands of recipes/synthetic/README.md's round sections; and the manifest list each of those rounds trains on.
#   recipes/synthetic/make_sets.sh                  make them all (resumes: every step keeps what it already made)
#   recipes/synthetic/make_sets.sh --dry-run        print the commands instead of running them
#   recipes/synthetic/make_sets.sh --list 29        print round 29's data.train_manifest (comma-separated) and exit:
#       python -m asr.train ... "data.train_manifest=[$(recipes/synthetic/make_sets.sh --list 29)]"
# The corpora are remade byte for byte (Piper's waveforms excepted, recipe README, Voices); the WORLD copies are drawn
# per entry, so they are the same copies. A step that fails is reported and the others go on; the script then exits 1
# and running it again retries what is missing (prepare.py lists a sentence GnuSpeech hangs on every time: the gnuspeech
# set's one failure). Calls `python`: activate the environment first (source .venv/bin/activate).
set -uo pipefail
cd "$(dirname "$0")/../.."

jobs=2                              # synthesis and voice-copy processes
female="--f0-range 1.4 2.0 --formant-range 1.08 1.22"   # rounds 27-30: male voices moved to female pitch and formants
run=run_step
case "${1:-}" in
  --dry-run) run=show_step ;;
  --list)
    round=${2:?--list needs a round: 29, 30 or 31}
    sets="data/synthetic85/train.jsonl data/synthetic_newvoices/train.jsonl data/synthetic_mbrola/train.jsonl
      data/synthetic_rhpico/train.jsonl data/synthetic/train_vc/manifest.jsonl data/synthetic_piper/train.jsonl
      data/synthetic_kokoro/train.jsonl data/synthetic_kokoro/train.jsonl data/synthetic_kokoro/train.jsonl
      data/synthetic_piper/train_vc/manifest.jsonl data/synthetic_rhpico/train_vc/manifest.jsonl
      data/synthetic_rhfemale/train.jsonl data/synthetic_rhfemale/train_vc/manifest.jsonl
      data/synthetic85/train_flite_female/manifest.jsonl data/synthetic85/train_festival_female/manifest.jsonl
      data/synthetic_rhpico/train_rhmale_female/manifest.jsonl"   # round 29's (Kokoro's 2.3 h listed three times)
    case "$round" in
      29) ;;
      30) sets="$sets data/synthetic_newvoices/train_male_female/manifest.jsonl" ;;
      31) sets="$sets data/synthetic_newvoices/train_male_female/manifest.jsonl data/synthetic_gnuspeech/train.jsonl" ;;
      *) echo "--list: no round $round here (29, 30 or 31; earlier rounds: recipes/synthetic/README.md)" >&2; exit 2 ;;
    esac
    echo $sets | tr ' ' ','
    exit 0 ;;
  "") ;;
  *) echo "unknown option $1 (known: --dry-run, --list ROUND)" >&2; exit 2 ;;
esac

failed=()
run_step() {  # name, command...: run it, timed; a failure is remembered, not fatal
  local name=$1 start=$SECONDS; shift
  echo "== $name: $*"
  if "$@"; then echo "== $name done in $((SECONDS - start)) s"; else echo "== $name FAILED"; failed+=("$name"); fi
}
show_step() { shift; echo "${OMP_NUM_THREADS:+OMP_NUM_THREADS=$OMP_NUM_THREADS }$*"; }
subset() {  # pattern, manifest, out: the manifest's lines whose voice matches (input of a set of copies)
  [ "$run" = show_step ] && { echo "grep -E '\"voice\": \"$1' $2 > $3"; return; }
  grep -E "\"voice\": \"$1" "$2" > "$3"
}
prepare() { $run "$1" python recipes/synthetic/prepare.py "${@:2}" seed=0 jobs=$jobs; }
copies() { $run "$1" python tools/perturb_voices.py "${@:2}" --jobs $jobs; }
no_default="voices.weights.espeak=0 voices.weights.flite=0 voices.weights.festival=0 voices.weights.hibari=0"

# the corpora (recipe README: the 25-hour corpus; rounds 13, 18, 19, 21, 22, 23, 25, 31)
prepare synthetic out_dir=data/synthetic hours=25
if [ "$run" = run_step ] && [ ! -d data/synthetic85/wav ]; then  # the 85-hour plan starts with the 25-hour one's files
  mkdir -p data/synthetic85 && cp -al data/synthetic/wav data/synthetic85/wav
fi
prepare synthetic85 out_dir=data/synthetic85 hours=85
prepare newvoices out_dir=data/synthetic_newvoices hours=20 voices.weights.espeak=0 voices.weights.flite=0 \
  voices.weights.hibari=0 "voices.festival=[rab_diphone,don_diphone,us1_mbrola,us2_mbrola,us3_mbrola,en1_mbrola]"
prepare mbrola out_dir=data/synthetic_mbrola hours=20 voices.weights.flite=0 voices.weights.festival=0 \
  voices.weights.hibari=0 "voices.espeak_languages=[]" "voices.espeak_mbrola=[mb-us1,mb-us2,mb-us3,mb-en1,mb-af1-en,mb-nl2-en,mb-fr1-en,mb-fr4-en,mb-de1-en,mb-de2-en,mb-de3-en,mb-de4-en,mb-de5-en,mb-de6-en,mb-gr2-en,mb-hu1-en,mb-pl1-en,mb-ro1-en,mb-sw1-en,mb-sw2-en]"
prepare rhpico out_dir=data/synthetic_rhpico hours=20 $no_default voices.weights.rhvoice=5 voices.weights.pico=2
prepare rhfemale out_dir=data/synthetic_rhfemale hours=20 $no_default voices.weights.rhvoice=3 voices.weights.pico=1 \
  "voices.rhvoice=[clb,lyubov]" "voices.pico=[en-US]"
prepare piper out_dir=data/synthetic_piper hours=10 $no_default voices.weights.piper=1
OMP_NUM_THREADS=1 prepare kokoro out_dir=data/synthetic_kokoro hours=2 $no_default voices.weights.kokoro=1
prepare gnuspeech out_dir=data/synthetic_gnuspeech hours=10 $no_default voices.weights.gnuspeech=1

# the WORLD copies (rounds 2, 24, 26, 27, 28, 29, 30)
copies train_vc data/synthetic/train.jsonl -o data/synthetic/train_vc --fraction 0.4 --seed 0
copies piper_vc data/synthetic_piper/train.jsonl -o data/synthetic_piper/train_vc --fraction 0.4 --seed 0
copies rhpico_vc data/synthetic_rhpico/train.jsonl -o data/synthetic_rhpico/train_vc --fraction 0.4 --seed 0
copies rhfemale_vc data/synthetic_rhfemale/train.jsonl -o data/synthetic_rhfemale/train_vc --fraction 0.4 --seed 0
subset "flite:" data/synthetic85/train.jsonl data/synthetic85/train_flite.jsonl
copies flite_female data/synthetic85/train_flite.jsonl -o data/synthetic85/train_flite_female --fraction 0.5 --seed 0 $female
subset "festival:" data/synthetic85/train.jsonl data/synthetic85/train_festival.jsonl
copies festival_female data/synthetic85/train_festival.jsonl -o data/synthetic85/train_festival_female --fraction 0.5 \
  --seed 0 $female
subset "rhvoice:(alan|bdl|evgeniy-eng)\"" data/synthetic_rhpico/train.jsonl data/synthetic_rhpico/train_rhmale.jsonl
copies rhmale_female data/synthetic_rhpico/train_rhmale.jsonl -o data/synthetic_rhpico/train_rhmale_female \
  --fraction 1.0 --seed 0 $female
subset "festival:(don_diphone|rab_diphone|en1_mbrola|us2_mbrola|us3_mbrola)\"" data/synthetic_newvoices/train.jsonl \
  data/synthetic_newvoices/train_male.jsonl
copies newvoices_male_female data/synthetic_newvoices/train_male.jsonl -o data/synthetic_newvoices/train_male_female \
  --fraction 0.5 --seed 0 $female

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (run it again to retry what is missing)" >&2
  exit 1
fi
