// The demo's report: its shape (the `--json` contract, docs/cli.md "demo"), the lookup
// check done against each POP, and the human text printed after the steps.
import { makeKeyRing } from '../../lib/store/keys.js'
import { verifyCla } from '../../lib/store/format.js'
import { messageOf, type StepRecord } from './steps.js'

export interface Registered {
  p0: string
  wl3: Buffer
  sha256: string
  version: number
}

export interface Check {
  name: string
  ok: boolean
  detail: string
}

export interface PopReport {
  id: string
  url: string
  metrics_url: string | null
  cursor: string | null
  lag_us: number | null
  blobs: number
  sealed: number
  converged: boolean
  /** The core's view of this POP (its last report through the POP API). */
  core_view: { cursor: string | null; lag_us: number | null; last_error: string | null } | null
  /** Set when the POP's report to the core failed (the pull itself succeeded). */
  report_error: string | null
  lookups: { ok: number; failed: number }
}

export interface DemoReport {
  ok: boolean
  data_dir: string
  remove_command: string
  log_file: string
  core: {
    url: string
    admin_url: string
    admin_setup_url: string | null
    metrics_url: string
    /** Bearer token of every /metrics in the demo (core and POPs). */
    metrics_token: string
    pop_api_url: string
    rsync_url: string
    blobs: number
  }
  paddle: { url: string }
  billing: {
    msp: string
    customer: string
    department: string
    product: string
    price: string
    subscription: { id: string; paddle_id: string | null; status: string; state: string }
    /** The subscription sold to a card customer: the checkout link Paddle gave (paid at the fake). */
    card: { subscription: string; checkout_url: string; status: string }
    pending_dual_writes: number
  }
  /** The vault's API key is shown here once, as `clavitor vault key` does (try it with curl). */
  vault: { id: string; api_key_id: string; api_key: string }
  credentials: { p0s: number; registrations: number }
  pops: PopReport[]
  lookups: { total: number; ok: number; failed: number; failures: string[] }
  audit: { ok: boolean; events: number; anchors: number; pops_ok: boolean }
  checks: Check[]
  steps: StepRecord[]
  /** Set when a step failed (then most other fields are absent). */
  error?: string
}

export const removeCommand = (dir: string) =>
  `chattr -R -i -a ${shellQuote(dir)} && rm -rf ${shellQuote(dir)}`

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

/** One lookup: null when the POP served exactly what was registered, else why not. */
export async function checkLookup(
  base: string,
  r: Registered,
  ring: ReturnType<typeof makeKeyRing>,
): Promise<string | null> {
  const res = await fetch(`${base}/api/v1/wl3/${r.p0}`)
  const body = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) return `HTTP ${res.status}`
  if (!body.equals(r.wl3)) return 'payload bytes differ'
  if (res.headers.get('etag') !== `"${r.sha256}"`) return `ETag ${res.headers.get('etag')}`
  const cla = await fetch(`${base}/api/v1/wl3/${r.p0}/cla`)
  const file = Buffer.from(await cla.arrayBuffer())
  if (cla.status !== 200) return `.cla: HTTP ${cla.status}`
  try {
    const d = verifyCla(file, ring)
    if (d.p0 !== r.p0) return `.cla names P0 ${d.p0}`
    if (!d.payload.equals(r.wl3)) return '.cla payload differs'
  } catch (err) {
    return `.cla: ${messageOf(err)}`
  }
  return null
}

/** The human report (the lines after the steps). */
export function formatReport(r: DemoReport): string {
  const l: string[] = ['']
  l.push(r.ok ? 'All checks passed.' : 'SOME CHECKS FAILED:')
  for (const c of r.checks) l.push(`  ${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`)
  l.push('')
  l.push(
    `Credentials: ${r.credentials.registrations} registered (${r.credentials.p0s} P0s); core store ${r.core.blobs} blobs (incl. the audit anchor)`,
  )
  for (const p of r.pops)
    l.push(
      `  ${p.id}: ${p.blobs} blobs, cursor ${p.cursor ?? '-'}, lag ${p.lag_us === null ? '-' : `${(p.lag_us / 1e6).toFixed(1)} s`}, lookups ${p.lookups.ok} ok / ${p.lookups.failed} failed`,
    )
  l.push(
    `Card checkout: ${r.billing.card.checkout_url} (${r.billing.card.subscription}, ${r.billing.card.status})`,
  )
  l.push(
    `Audit: chain ${r.audit.ok ? 'verified' : 'BROKEN'} (${r.audit.events} events, ${r.audit.anchors} anchor(s)); pending dual-writes ${r.billing.pending_dual_writes}`,
  )
  l.push('')
  l.push(`Admin UI:     ${r.core.admin_url}`)
  if (r.core.admin_setup_url)
    l.push(
      `  first admin (one-time setup link, needs a security key or passkey):`,
      `  ${r.core.admin_setup_url}`,
    )
  l.push(
    `Metrics:      ${r.core.metrics_url}${r.pops.map((p) => (p.metrics_url ? `  ${p.metrics_url}` : '')).join('')}`,
    `  (send Authorization: Bearer ${r.core.metrics_token})`,
  )
  l.push(`Lookups:      ${r.pops.map((p) => `${p.url}/api/v1/wl3/{p0}`).join('  ')}`)
  l.push(`POP API:      ${r.core.pop_api_url} (mTLS)   rsync: ${r.core.rsync_url}`)
  l.push(`Fake Paddle:  ${r.paddle.url}/__fake/state`)
  l.push(`Vault key:    ${r.vault.api_key} (vault ${r.vault.id}; shown once)`)
  l.push(
    `  register:   curl -s -H "Authorization: Bearer ${r.vault.api_key}" -H 'content-type: application/json' \\`,
    `                -d "{\\"p0\\":\\"$(openssl rand -hex 16)\\",\\"wl3\\":\\"$(head -c 200 /dev/urandom | base64 -w0)\\"}" \\`,
    `                ${r.core.url}/api/v1/credentials/register`,
  )
  l.push(`Data:         ${r.data_dir}   logs: ${r.log_file}`)
  return l.join('\n')
}
