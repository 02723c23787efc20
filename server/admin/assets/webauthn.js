// Login and enrollment pages: runs one WebAuthn ceremony through @simplewebauthn/browser
// (served beside this file as SimpleWebAuthnBrowser) and the core's JSON endpoints.
;(() => {
  'use strict'
  const root = document.getElementById('webauthn')
  if (!root) return
  const status = document.getElementById('status')
  const go = document.getElementById('go')
  const lib = window.SimpleWebAuthnBrowser
  const csrf = root.dataset.csrf
  const mode = root.dataset.mode

  const say = (text, cls) => {
    status.textContent = text
    status.className = cls || 'muted'
  }

  async function post(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    })
    const json = await res.json().catch(() => ({}))
    if (!res.ok) throw new Error((json.error && json.error.message) || 'HTTP ' + res.status)
    return json
  }

  if (!lib || !lib.browserSupportsWebAuthn()) {
    say('This browser does not support security keys (WebAuthn).', 'error')
    go.disabled = true
    return
  }

  go.addEventListener('click', async () => {
    go.disabled = true
    try {
      say('Touch your security key…')
      if (mode === 'login') {
        const { ceremonyId, options } = await post('/admin/login/options', {})
        const response = await lib.startAuthentication({ optionsJSON: options })
        await post('/admin/login/verify', { ceremonyId, response })
      } else {
        const name = document.getElementById('name').value
        const { ceremonyId, options } = await post('/admin/setup/options', {
          token: root.dataset.token,
          name,
        })
        const response = await lib.startRegistration({ optionsJSON: options })
        await post('/admin/setup/verify', { ceremonyId, response })
      }
      say('Done.', 'ok')
      window.location.assign('/admin')
    } catch (err) {
      say(err && err.message ? err.message : String(err), 'error')
      go.disabled = false
    }
  })
})()
