import t from 'tap'
import { escapeHtml, html, raw, SafeHtml } from '../../../server/admin/html.js'
import { lineChart } from '../../../server/admin/charts.js'

t.test('html escapes every interpolated value by default', async (t) => {
  const evil = `<img src=x onerror="alert('1')">&\``
  const out = html`<p title="${evil}">${evil}</p>`
  t.type(out, SafeHtml)
  t.equal(
    out.value,
    '<p title="&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;&#96;">&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;&#96;</p>',
  )
  t.equal(escapeHtml('a&b'), 'a&amp;b')
})

t.test('nested html and arrays pass through once; raw is explicit', async (t) => {
  const items = ['<a>', 'b']
  // prettier-ignore
  const out = html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>`
  t.equal(out.value, '<ul><li>&lt;a&gt;</li><li>b</li></ul>')
  t.equal(html`${raw('<b>ok</b>')}`.value, '<b>ok</b>')
  t.equal(html`${null}${undefined}${false}${0}`.value, '0')
  t.equal(String(html`x`), 'x')
})

t.test('lineChart: SVG with one polyline per series, labels escaped, empty state', async (t) => {
  const empty = lineChart('Nothing', [], String).value
  t.match(empty, /No data yet/)
  const now = Date.now() * 1000
  const svg = lineChart(
    'Lag <per POP>',
    [
      {
        label: '<pop-a>',
        points: [
          { x: now, y: 1 },
          { x: now + 60e6, y: 3 },
        ],
      },
      { label: 'pop-b', points: [{ x: now, y: 2 }] },
    ],
    (y) => `${y} s`,
  ).value
  t.equal(svg.match(/<polyline/g)?.length, 2)
  t.match(svg, /Lag &lt;per POP&gt;/)
  t.match(svg, /&lt;pop-a&gt;/)
  t.notMatch(svg, /<pop-a>/)
  t.match(svg, />3 s</, 'y axis maximum')
  t.notMatch(svg, /style=/, 'no inline styles (CSP style-src self)')
})
