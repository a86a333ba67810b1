// within (src/util/poll.ts): whether a promise settles in time, either way.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { within } from '../../src/util/poll.js'

test('within: true for a promise that resolves or rejects in time, false for one that does not settle', async () => {
  assert.equal(await within(Promise.resolve(1), 1000), true)
  assert.equal(await within(Promise.reject(new Error('no')), 1000), true)
  let settle: () => void = () => {}
  const later = new Promise<void>(resolve => { settle = resolve })
  assert.equal(await within(later, 20), false)
  settle()
  assert.equal(await within(later, 1000), true)
})
