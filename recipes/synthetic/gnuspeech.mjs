// GnuSpeech (articulatory synthesis; the npm package @echogarden/gnuspeech-wasm) for recipes/synthetic/engines.py:
//   node gnuspeech.mjs <install dir>  < items.json
// <install dir> holds node_modules/@echogarden/gnuspeech-wasm (tools/install.sh dev: npm install --prefix <dir>).
// items.json: [{"text", "voice" (male|female|large_child|small_child|baby), "tempo", "pitch_offset" (semitones), "out"}]
// Writes each item's WAV (44.1 kHz, 16-bit) to its "out" path and prints "OK <out>" or "FAILED <out> <reason>" per item.
// The intonation's random parts (random_intonation, intonation_drift), which no seed reaches, are off: the same item
// gives the same file on every run.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const modules = join(process.argv[2], 'node_modules')
const load = (path) => import(pathToFileURL(join(modules, path)).href)
const { default: initializer } = await load('@echogarden/gnuspeech-wasm/wasm/gnuspeech.js')
const { defaultTrmControlModelFileContent } = await load('@echogarden/gnuspeech-wasm/dist/utilities/DefaultTrmControlModel.js')
const { wrapEmscriptenModuleHeap } = await load('wasm-heap-manager/dist/exports/WasmHeapManager.js')

const CONFIG_DIR = '/data/en'  // the package's English data, embedded in the module's file system
const setting = (config, key, value) => {
  const line = new RegExp(`^${key} = .*$`, 'm')
  if (!line.test(config)) throw new Error(`no ${key} in the control model config`)
  return config.replace(line, `${key} = ${value}`)
}

const m = await initializer()
const heap = wrapEmscriptenModuleHeap(m)
for (const item of JSON.parse(readFileSync(0, 'utf8'))) {
  const refs = []
  try {
    let config = setting(defaultTrmControlModelFileContent, 'voice_name', item.voice)
    config = setting(config, 'tempo', item.tempo.toFixed(4))
    config = setting(config, 'pitch_offset', item.pitch_offset.toFixed(3))
    config = setting(config, 'random_intonation', '0')
    config = setting(config, 'intonation_drift', '0')
    m.FS.writeFile(`${CONFIG_DIR}/trm_control_model.txt`, config)
    for (const s of [item.text, '/out.wav', CONFIG_DIR, '/out-params.txt']) refs.push(heap.allocNullTerminatedUtf8String(s))
    m._GnuSpeech_synthesizeToFile(refs[0].address, refs[1].address, refs[2].address, refs[3].address, false)
    writeFileSync(item.out, m.FS.readFile('/out.wav'))
    m.FS.unlink('/out.wav')
    console.log(`OK ${item.out}`)
  } catch (err) {
    console.log(`FAILED ${item.out} ${String(err && err.message || err).split('\n')[0]}`)
  } finally {
    refs.forEach((ref) => ref.free())
  }
}
