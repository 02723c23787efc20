// Types of index.mjs and index.cjs.
export declare const importLoader: string
export declare const preload: boolean
export declare const testFileExtensions: string[]
