// Per-POP IP allowlists: CIDR lists checked with ipaddr.js. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d, what a dual-stack socket reports) are compared as IPv4.
import ipaddr from 'ipaddr.js'
import { claError } from '../errors.js'

type Addr = ipaddr.IPv4 | ipaddr.IPv6
export type Cidr = [Addr, number]

/** Parses and validates a CIDR list (a bare address means /32 or /128). */
export function parseAllowlist(list: readonly string[]): Cidr[] {
  return list.map((entry) => {
    const s = entry.trim()
    try {
      if (s.includes('/')) {
        const [addr, bits] = ipaddr.parseCIDR(s)
        return [
          addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96
            ? (addr as ipaddr.IPv6).toIPv4Address()
            : addr,
          addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96
            ? bits - 96
            : bits,
        ] as Cidr
      }
      const addr = ipaddr.process(s)
      return [addr, addr.kind() === 'ipv4' ? 32 : 128] as Cidr
    } catch (cause) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `"${entry}" is not an IP address or CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)`,
        { cause },
      )
    }
  })
}

/** Normalises a socket address: IPv4-mapped IPv6 becomes IPv4. Undefined if unparsable. */
export function normalizeIp(ip: string | undefined): string | undefined {
  if (!ip) return undefined
  try {
    return ipaddr.process(ip).toString()
  } catch {
    return undefined
  }
}

export function ipAllowed(ip: string | undefined, list: readonly Cidr[]): boolean {
  if (!ip) return false
  let addr: Addr
  try {
    addr = ipaddr.process(ip)
  } catch {
    return false
  }
  return list.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net as never, bits))
}
