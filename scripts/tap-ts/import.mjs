// What tap runs first in each test process (`--import`): hooks.mjs becomes the module loader.
import { register } from 'node:module'

register('./hooks.mjs', import.meta.url)
