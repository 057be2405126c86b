#!/usr/bin/env node
// Part of levee's test suite: counts results of the cache-tests.fyi suite (tests/cache-tests/run.sh).
// Summarise http-cache-tests (cache-tests.fyi) CLI results.
//
// Usage: node count.mjs RESULTS.json [MORE.json ...] [--json] [--suite DIR] [--list KIND:RESULT]
//   --suite DIR   path of the installed package (default: $CACHE_TESTS_DIR, else
//                 ./node_modules/http-cache-tests next to this script)
//   --json        print one JSON object per results file instead of text
//   --list X      also list test ids whose kind:result matches X, e.g. required:fail,
//                 required:setup_fail, optimal:optional_fail ('*' wildcards either side)
//
// Test set = what the CLI runs: tests/index.mjs + surrogate-control, minus browser_only.
// Kinds: 'required' (or no kind), 'optimal', 'check'.
// Classification mirrors lib/display.mjs determineTestResult() (what cache-tests.fyi shows):
//   a test whose depends_on tests did not pass is 'dependency_fail', even if it returned true.
// "raw true" counts ignore dependencies (the result value is literally true).
import path from 'path'
import fs from 'fs'
import { pathToFileURL, fileURLToPath } from 'url'

const args = process.argv.slice(2)
let suiteDir = process.env.CACHE_TESTS_DIR ||
  path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules', 'http-cache-tests')
let asJson = false
const lists = []
const files = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--suite') suiteDir = args[++i]
  else if (args[i] === '--json') asJson = true
  else if (args[i] === '--list') lists.push(args[++i])
  else files.push(args[i])
}
if (files.length === 0) {
  console.error('usage: node count.mjs RESULTS.json [...] [--json] [--suite DIR] [--list kind:result]')
  process.exit(2)
}

const imp = p => import(pathToFileURL(path.join(suiteDir, p)).href).then(m => m.default)
const suites = [...await imp('tests/index.mjs'), await imp('tests/surrogate-control.mjs')]
const byId = new Map()
for (const s of suites) for (const t of s.tests) if (t.browser_only !== true) byId.set(t.id, t)

const kindOf = t => t.kind || 'required'

function classify (id, results, seen = new Set()) {
  const test = byId.get(id)
  const r = results[id]
  if (r === undefined) return 'untested'
  if (test && test.depends_on && !seen.has(id)) {
    seen.add(id)
    for (const dep of test.depends_on) {
      if (!['pass', 'yes'].includes(classify(dep, results, seen))) return 'dependency_fail'
    }
  }
  if (Array.isArray(r) && r[0] === 'Setup') return r[1] === 'retry' ? 'retry' : 'setup_fail'
  if (Array.isArray(r) && r[0] !== 'Assertion') return 'harness_fail' // FetchError, TypeError, ...
  const k = kindOf(test)
  if (k === 'required') return r === true ? 'pass' : 'fail'
  if (k === 'optimal') return r === true ? 'pass' : 'optional_fail'
  if (k === 'check') return r === true ? 'yes' : 'no'
  throw new Error(`unknown kind ${k} for ${id}`)
}

function summarise (file) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  const s = {
    file,
    total: byId.size,
    results_present: 0,
    raw_true: 0, // result === true, all kinds, dependencies ignored
    unknown_ids: Object.keys(results).filter(id => !byId.has(id)).length,
    kinds: {}
  }
  const listed = []
  for (const [id, t] of byId) {
    const k = kindOf(t)
    const ks = s.kinds[k] || (s.kinds[k] = { total: 0, raw_true: 0, outcomes: {} })
    ks.total++
    if (id in results) s.results_present++
    if (results[id] === true) { s.raw_true++; ks.raw_true++ }
    const c = classify(id, results)
    ks.outcomes[c] = (ks.outcomes[c] || 0) + 1
    for (const l of lists) {
      const [lk, lc] = l.split(':')
      if ((lk === '*' || lk === k) && (lc === '*' || lc === c)) {
        listed.push(`${k}:${c}\t${id}\t${Array.isArray(results[id]) ? results[id].join(': ') : results[id]}`)
      }
    }
  }
  const o = k => s.kinds[k] || { total: 0, raw_true: 0, outcomes: {} }
  // "passed" = shown as pass/yes on cache-tests.fyi (dependency-aware)
  s.passed = ['required', 'optimal', 'check'].reduce((n, k) =>
    n + (o(k).outcomes.pass || 0) + (o(k).outcomes.yes || 0), 0)
  s.required = { passed: o('required').outcomes.pass || 0, raw_true: o('required').raw_true, total: o('required').total }
  s.optimal = { passed: o('optimal').outcomes.pass || 0, raw_true: o('optimal').raw_true, total: o('optimal').total }
  s.check = { yes: o('check').outcomes.yes || 0, total: o('check').total }
  return { s, listed }
}

for (const f of files) {
  const { s, listed } = summarise(f)
  if (asJson) { console.log(JSON.stringify(s)); continue }
  console.log(`== ${f}`)
  console.log(`total tests: ${s.total} (results present: ${s.results_present}, ids not in suite: ${s.unknown_ids})`)
  console.log(`passed: ${s.passed} (dependency-aware, pass+yes)   raw true: ${s.raw_true}`)
  console.log(`required passed: ${s.required.passed}/${s.required.total} (raw true: ${s.required.raw_true})`)
  console.log(`optimal passed: ${s.optimal.passed}/${s.optimal.total}   check yes: ${s.check.yes}/${s.check.total}`)
  for (const [k, ks] of Object.entries(s.kinds)) {
    console.log(`  ${k.padEnd(8)} ` + Object.entries(ks.outcomes).sort().map(([c, n]) => `${c}=${n}`).join(' '))
  }
  for (const l of listed) console.log(l)
}
