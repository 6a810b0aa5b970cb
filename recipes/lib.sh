# Shell helpers the recipes' run.sh scripts source (`. recipes/lib.sh` from the repository root).

# log MESSAGE...: the message with a timestamp, as every stage announces itself
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*"; }

# tuned_lm_overrides TUNE_LM_JSON: the decoder.lm_weight / decoder.word_score overrides of the best pair that
# tools/tune_lm.py wrote, or nothing when the file is not there (conf/decoder/beam.yaml's pair then applies)
tuned_lm_overrides() {
  [ -f "$1" ] || return 0
  python -c 'import json, sys; b = json.load(open(sys.argv[1]))["best"]
print("decoder.lm_weight=%s decoder.word_score=%s" % (b["lm_weight"], b["word_score"]))' "$1"
}
