// The part of RFC 8941 (Structured Field Values for HTTP) that RFC 9421 signatures and
// RFC 9530 digests need: Dictionaries whose members are Items or Inner Lists, with
// Parameters; bare items Integer, Decimal, String, Token, Byte Sequence, Boolean.
// Strict: any deviation from the grammar throws SfError (callers turn it into a 401).

export class SfError extends Error {
  override name = 'SfError'
}

export class Token {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value
  }
}

export type BareItem = number | string | Token | Uint8Array | boolean
export type Params = Map<string, BareItem>
export interface Item {
  value: BareItem
  params: Params
}
export interface InnerList {
  items: Item[]
  params: Params
}
export type Member = Item | InnerList
export type Dictionary = Map<string, Member>

export function isInnerList(m: Member): m is InnerList {
  return 'items' in m
}

class Parser {
  i = 0
  constructor(readonly s: string) {}
  peek(): string {
    return this.s[this.i] ?? ''
  }
  eof(): boolean {
    return this.i >= this.s.length
  }
  skipSP(): void {
    while (this.peek() === ' ') this.i++
  }
  skipOWS(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.i++
  }
  fail(what: string): never {
    throw new SfError(`${what} at position ${this.i}`)
  }

  dictionary(): Dictionary {
    const dict: Dictionary = new Map()
    this.skipSP()
    if (this.eof()) return dict
    for (;;) {
      const key = this.key()
      let member: Member
      if (this.peek() === '=') {
        this.i++
        member = this.peek() === '(' ? this.innerList() : this.item()
      } else {
        member = { value: true, params: this.params() }
      }
      dict.set(key, member)
      this.skipOWS()
      if (this.eof()) return dict
      if (this.peek() !== ',') this.fail('expected ","')
      this.i++
      this.skipOWS()
      if (this.eof()) this.fail('trailing ","')
    }
  }

  innerList(): InnerList {
    if (this.peek() !== '(') this.fail('expected "("')
    this.i++
    const items: Item[] = []
    for (;;) {
      this.skipSP()
      if (this.peek() === ')') {
        this.i++
        return { items, params: this.params() }
      }
      items.push(this.item())
      const c = this.peek()
      if (c !== ' ' && c !== ')') this.fail('expected " " or ")" in inner list')
    }
  }

  item(): Item {
    const value = this.bareItem()
    return { value, params: this.params() }
  }

  params(): Params {
    const p: Params = new Map()
    while (this.peek() === ';') {
      this.i++
      this.skipSP()
      const k = this.key()
      let v: BareItem = true
      if (this.peek() === '=') {
        this.i++
        v = this.bareItem()
      }
      p.set(k, v)
    }
    return p
  }

  key(): string {
    const m = /^[a-z*][a-z0-9_\-.*]*/.exec(this.s.slice(this.i))
    if (!m) this.fail('expected a key')
    this.i += m[0].length
    return m[0]
  }

  bareItem(): BareItem {
    const c = this.peek()
    if (c === '-' || (c >= '0' && c <= '9')) return this.number()
    if (c === '"') return this.string()
    if (c === ':') return this.bytes()
    if (c === '?') return this.boolean()
    if (/[A-Za-z*]/.test(c)) return this.token()
    return this.fail('expected an item')
  }

  number(): number {
    const m = /^-?[0-9]{1,15}(\.[0-9]{1,3})?/.exec(this.s.slice(this.i))
    if (!m) this.fail('bad number')
    if (m[1] === undefined && m[0].replace('-', '').length > 15) this.fail('integer too long')
    const next = this.s[this.i + m[0].length]
    if (next !== undefined && /[0-9.]/.test(next)) this.fail('bad number')
    this.i += m[0].length
    return Number(m[0])
  }

  string(): string {
    this.i++
    let out = ''
    for (;;) {
      if (this.eof()) this.fail('unterminated string')
      const c = this.s[this.i++]!
      if (c === '\\') {
        const n = this.s[this.i++]
        if (n !== '"' && n !== '\\') this.fail('bad escape in string')
        out += n
      } else if (c === '"') {
        return out
      } else {
        const code = c.charCodeAt(0)
        if (code < 0x20 || code > 0x7e) this.fail('non-ASCII character in string')
        out += c
      }
    }
  }

  token(): Token {
    const m = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*/.exec(this.s.slice(this.i))
    if (!m) this.fail('bad token')
    this.i += m[0].length
    return new Token(m[0])
  }

  bytes(): Uint8Array {
    const end = this.s.indexOf(':', this.i + 1)
    if (end < 0) this.fail('unterminated byte sequence')
    const b64 = this.s.slice(this.i + 1, end)
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) this.fail('bad base64 in byte sequence')
    this.i = end + 1
    return new Uint8Array(Buffer.from(b64, 'base64'))
  }

  boolean(): boolean {
    const v = this.s.slice(this.i, this.i + 2)
    if (v !== '?0' && v !== '?1') this.fail('bad boolean')
    this.i += 2
    return v === '?1'
  }
}

/** Parses a Dictionary field value (several header lines joined with ", "). */
export function parseDictionary(value: string): Dictionary {
  const p = new Parser(value)
  const d = p.dictionary()
  p.skipSP()
  if (!p.eof()) p.fail('trailing characters')
  return d
}

/** Parses a single Item (used for component identifiers such as "@method"). */
export function parseItem(value: string): Item {
  const p = new Parser(value)
  p.skipSP()
  const it = p.item()
  p.skipSP()
  if (!p.eof()) p.fail('trailing characters')
  return it
}

export function serializeBareItem(v: BareItem): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new SfError('number out of range')
    return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000)
  }
  if (typeof v === 'string') {
    if (!/^[\x20-\x7e]*$/.test(v)) throw new SfError('string with non-printable ASCII')
    return `"${v.replace(/[\\"]/g, (c) => '\\' + c)}"`
  }
  if (typeof v === 'boolean') return v ? '?1' : '?0'
  if (v instanceof Token) return v.value
  return `:${Buffer.from(v).toString('base64')}:`
}

export function serializeParams(p: Params): string {
  let out = ''
  for (const [k, v] of p) out += v === true ? `;${k}` : `;${k}=${serializeBareItem(v)}`
  return out
}

export function serializeItem(it: Item): string {
  return serializeBareItem(it.value) + serializeParams(it.params)
}

export function serializeInnerList(l: InnerList): string {
  return `(${l.items.map(serializeItem).join(' ')})${serializeParams(l.params)}`
}

export function serializeDictionary(d: Dictionary): string {
  return [...d]
    .map(([k, m]) => {
      if (isInnerList(m)) return `${k}=${serializeInnerList(m)}`
      if (m.value === true) return `${k}${serializeParams(m.params)}`
      return `${k}=${serializeItem(m)}`
    })
    .join(', ')
}
