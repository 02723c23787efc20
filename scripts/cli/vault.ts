// `clavitor vault create|key|revoke-key|list|status`: vaults and their API keys (lib/credentials),
// for operators and the demo, without the admin UI.
import { Option, type Command } from 'commander'
import { action, dataOption, jsonOption, printJson, withCore } from './common.js'

export function register(program: Command): void {
  const vault = program
    .command('vault')
    .description('vaults and their API keys (the credentials API authenticates with a vault key)')

  vault
    .command('create')
    .description('create a vault for a customer; prints its id')
    .addOption(dataOption())
    .addOption(
      new Option('--customer <id>', 'customer id (our id)')
        .env('CLAVITOR_CUSTOMER')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--subscription <id>',
        "subscription paying for it (the customer's or a parent's); none: cannot register",
      ).env('CLAVITOR_SUBSCRIPTION'),
    )
    .addOption(
      new Option('--name <name>', 'display name').env('CLAVITOR_VAULT_NAME').makeOptionMandatory(),
    )
    .addOption(jsonOption())
    .action(
      action(
        async (opts: {
          data: string
          customer: string
          subscription?: string
          name: string
          json?: boolean
        }) => {
          const v = await withCore(opts.data, (core) =>
            core.credentials.createVault({
              customerId: opts.customer,
              subscriptionId: opts.subscription ?? null,
              name: opts.name,
              actor: 'cli',
            }),
          )
          if (opts.json) printJson(v)
          else process.stdout.write(`${v.id}\n`)
        },
      ),
    )

  vault
    .command('key')
    .description('create an API key for a vault; the key is printed ONCE (only its hash is kept)')
    .argument('<vault-id>', 'the vault (vlt_…)')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (vaultId: string, opts: { data: string; json?: boolean }) => {
        const k = await withCore(opts.data, (core) =>
          core.credentials.createApiKey(vaultId, { actor: 'cli' }),
        )
        if (opts.json) printJson({ id: k.id, vault_id: k.vaultId, key: k.key })
        else {
          process.stdout.write(`${k.key}\n`)
          process.stderr.write(
            `key ${k.id} for vault ${k.vaultId}: store it now, it is not shown again\n`,
          )
        }
      }),
    )

  vault
    .command('revoke-key')
    .description('revoke an API key (by its id, the part after clv_)')
    .argument('<key-id>', '16 hex characters')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (keyId: string, opts: { data: string; json?: boolean }) => {
        const r = await withCore(opts.data, (core) =>
          core.credentials.revokeApiKey(keyId, { actor: 'cli' }),
        )
        if (opts.json) printJson(r)
        else process.stdout.write(`revoked key ${r.id} of vault ${r.vault_id}\n`)
      }),
    )

  vault
    .command('list')
    .description('list vaults with credential and key counts and subscription status')
    .addOption(dataOption())
    .option('--customer <id>', 'only this customer')
    .addOption(jsonOption())
    .action(
      action(async (opts: { data: string; customer?: string; json?: boolean }) => {
        const rows = await withCore(opts.data, (core) =>
          core.credentials.listVaults(
            opts.customer ? { customerId: opts.customer, limit: 1000 } : { limit: 1000 },
          ),
        )
        if (opts.json) return printJson(rows)
        for (const v of rows) {
          process.stdout.write(
            `${v.id}  ${v.customer_id}  ${v.subscription_id ?? '-'} (${v.subscription_status ?? 'none'})  ` +
              `credentials=${v.credentials} keys=${v.active_keys}  ${v.name}\n`,
          )
        }
      }),
    )

  vault
    .command('status')
    .description(
      "what the vault's own key reads at GET /api/v1/vault/status: subscription, plan, limits, usage",
    )
    .argument('<vault-id>', 'the vault (vlt_…)')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (vaultId: string, opts: { data: string; json?: boolean }) => {
        const s = await withCore(opts.data, (core) => core.credentials.vaultStatus(vaultId))
        if (opts.json) return printJson(s)
        const lim = (n: number | null) => (n === null ? 'no limit' : String(n))
        const sub = s.subscription
        const plans = s.plans.map((p) => (p.quantity > 1 ? `${p.name} ×${p.quantity}` : p.name))
        process.stdout.write(
          [
            `vault ${s.vault.id} (${s.vault.name}) of ${s.vault.customer_id}`,
            sub
              ? `subscription ${sub.id}: ${sub.status}${sub.current_period_ends_at ? `, period ends ${sub.current_period_ends_at}` : ''}${sub.scheduled_change ? `, scheduled ${JSON.stringify(sub.scheduled_change)}` : ''}`
              : 'subscription: none (cannot register)',
            `plan: ${plans.length ? plans.join(', ') : 'none (no limits enforced)'}`,
            `vaults: ${s.usage.vaults} of ${lim(s.limits.max_vaults)}`,
            `devices: ${s.usage.devices} of ${lim(s.limits.max_devices_per_vault)} (new device ${s.can_enrol_device ? 'allowed' : 'refused'})`,
          ].join('\n') + '\n',
        )
      }),
    )
}
