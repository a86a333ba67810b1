// The age model (src/sim/agemodel.ts, docs/gossip.md section 2) against Table C and the model's
// stated properties, and against config.expectedMaxAge (what hpcd uses for downAfter).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  averageAgeOfT, calcWinsizeGivenAv, calcWinsizeGivenMax, calcWinsizeGivenUptoAgeEntries, entriesUpToAge,
  EULER_GAMMA, GAMMA, inWindowAge, maxAgeOfT, model, tOfW, xOfT
} from '../../src/sim/agemodel.js'
import { expectedMaxAge } from '../../src/config.js'

// Table C (docs/gossip.md, section 2): n, smallest w for avg age < 10, E[max] < 60, E[max] < 20 (an independent source)
const TABLE_C: Array<[number, number, number, number]> = [
  [64, 8, 5, 15], [128, 17, 12, 35], [256, 38, 26, 78], [512, 86, 58, 174],
  [1024, 202, 128, 384], [2048, 494, 280, 840], [4096, 1317, 608, 1822]
]

test('Table C: window searches reproduce every published row (E[max] with Euler γ)', () => {
  for (const [n, av10, max60, max20] of TABLE_C) {
    assert.equal(calcWinsizeGivenAv(n, 10), av10, `avg<10 at n=${n}`)
    assert.equal(calcWinsizeGivenMax(n, 60, EULER_GAMMA), max60, `max<60 at n=${n}`)
    assert.equal(calcWinsizeGivenMax(n, 20, EULER_GAMMA), max20, `max<20 at n=${n}`)
  }
})

test("Table C with gossimon's γ = 0.577: same rows up to n=2048; n=4096 is one window smaller", () => {
  for (const [n, , max60, max20] of TABLE_C) {
    const d = n === 4096 ? 1 : 0
    assert.equal(calcWinsizeGivenMax(n, 60, GAMMA), max60 - d, `max<60 at n=${n}`)
    assert.equal(calcWinsizeGivenMax(n, 20, GAMMA), max20 - d, `max<20 at n=${n}`)
  }
})

test('window searches return the smallest window meeting the target', () => {
  for (const n of [50, 300, 1000]) {
    for (const target of [12, 30, 80]) {
      const w = calcWinsizeGivenAv(n, target)
      if (w === 0) continue
      assert.ok(model(n, w).Av < target)
      if (w > 1) assert.ok(model(n, w - 1).Av >= target)
      const wm = calcWinsizeGivenMax(n, target * 4)
      assert.ok(wm > 0 && model(n, wm).M < target * 4)
      if (wm > 1) assert.ok(model(n, wm - 1).M >= target * 4)
    }
  }
  assert.equal(calcWinsizeGivenAv(64, 0.5), 0, 'below the in-window age no window suffices')
  assert.equal(calcWinsizeGivenAv(64, -1), 0)
})

test('T(w) inverts X(T): X(T(w)) = w, and X grows from 1 to n', () => {
  for (const n of [16, 64, 1024, 4096]) {
    for (const w of [1, 2, 8, 16, 15].filter(x => x < n)) assert.ok(Math.abs(xOfT(n, tOfW(n, w)) - w) < 1e-9 * n, `n=${n} w=${w}`)
    assert.ok(Math.abs(xOfT(n, 0) - 1) < 1e-12)
    assert.ok(xOfT(n, 1e6) <= n && xOfT(n, 1e6) > n - 1e-6)
  }
})

test('A_v ≈ n/w + c with c ≈ 2.2–3.7 for w = 16–64; doubling w roughly halves the age', () => {
  for (const n of [4096, 16384]) {
    for (const w of [16, 32, 64]) {
      const c = model(n, w).Av - n / w
      assert.ok(c > 2.1 && c < 3.8, `c=${c} at n=${n} w=${w}`)
    }
    const r = model(n, 32).Av / model(n, 16).Av
    assert.ok(r > 0.5 && r < 0.56, `ratio ${r}`)
  }
  // A_v always exceeds the in-window age, which is positive and below T
  for (const [n, w] of [[64, 8], [1024, 29]]) {
    const m = model(n, w)
    assert.ok(m.Aw > 0 && m.Aw < m.T && m.Av > m.Aw)
    assert.equal(m.Aw, inWindowAge(n, m.T))
    assert.equal(m.Av, averageAgeOfT(n, m.T))
  }
})

test('M matches (n−1)(ln n + γ)/w: within 0.05% from n≈1000, the gap shrinking like 1/(2n)', () => {
  for (const n of [256, 1024, 2048, 4096]) {
    for (const w of [8, 16, 32]) {
      const approx = (n - 1) * (Math.log(n) + GAMMA) / w
      const err = Math.abs(model(n, w).M / approx - 1)
      assert.ok(err < (n >= 1024 ? 5e-4 : 1 / (n - 1)), `n=${n} w=${w}: ${err}`)
    }
  }
})

test('entries up to age t: X inside the window, then rising towards n', () => {
  const n = 512; const T = tOfW(n, 16)
  assert.equal(entriesUpToAge(n, T, T / 2), xOfT(n, T))
  let prev = 0
  for (let t = T + 1; t < 20 * n / 16; t += 7) {
    const e = entriesUpToAge(n, T, t)
    assert.ok(e >= prev && e <= n)
    prev = e
  }
  assert.ok(prev > 0.99 * n)
  const w = calcWinsizeGivenUptoAgeEntries(n, 30, 200)
  assert.ok(w > 1 && entriesUpToAge(n, tOfW(n, w), 30) >= 200 && entriesUpToAge(n, tOfW(n, w - 1), 30) < 200)
})

test('config.expectedMaxAge (hpcd downAfter) agrees with the model M within 0.01%', () => {
  for (const [n, w] of [[16, 4], [64, 8], [256, 16], [1024, 20], [4096, 29]]) {
    const a = expectedMaxAge(n, w); const b = model(n, w).M
    assert.ok(Math.abs(a / b - 1) < 1e-4, `n=${n} w=${w}: ${a} vs ${b}`)
    assert.ok(Math.abs(maxAgeOfT(n, tOfW(n, w), 0.5772) / a - 1) < 1e-9)
  }
})

test('the model refuses parameters outside its domain', () => {
  assert.throws(() => model(2, 1), RangeError)
  assert.throws(() => model(64, 64), RangeError)
  assert.throws(() => model(64, 0), RangeError)
})
