// Test subject: a Node.js event loop with timers, file I/O on libuv's thread pool (append, read
// back, stat) and a worker_threads Worker doing CPU work per round through messages. One line per
// round, then a summary; the output depends only on ROUNDS.
// usage: node nodework.mjs ROUNDS SCRATCHFILE
import { Worker } from 'node:worker_threads'
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises'

const rounds = Number(process.argv[2])
const scratch = process.argv[3]
const w = new Worker(`
const { parentPort } = require('node:worker_threads')
parentPort.on('message', n => {
  let x = n >>> 0
  for (let i = 0; i < 300000; i++) x = (Math.imul(x, 1103515245) + 12345) >>> 0
  parentPort.postMessage(x)
})
`, { eval: true })
const ask = n => new Promise(resolve => { w.once('message', resolve); w.postMessage(n) })
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
let ticks = 0
const iv = setInterval(() => { ticks++ }, 10)
await writeFile(scratch, '')
for (let r = 0; r < rounds; r++) {
  const x = await ask(r + 1)
  await appendFile(scratch, `${r} ${x.toString(16)}\n`)
  const back = (await readFile(scratch, 'utf8')).trimEnd().split('\n')
  const st = await stat(scratch)
  console.log(`round ${r} ${x.toString(16)} lines ${back.length} bytes ${st.size} last ${back[back.length - 1]}`)
  await sleep(30)
}
clearInterval(iv)
await w.terminate()
console.log(`done ticked ${ticks > 0}`)
process.exitCode = 6
