/// <reference types="vitest/config" />
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// The console is served by Headwater at /-/console/ and ships inside the Python
// package, so the build goes straight to src/headwater/console/ (committed).
// HEADWATER_CONSOLE_OUT overrides it (check-dist builds to a temp dir and diffs).
const outDir =
  process.env.HEADWATER_CONSOLE_OUT ??
  fileURLToPath(new URL('../src/headwater/console', import.meta.url))

export default defineConfig({
  base: '/-/console/',
  plugins: [react()],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: true,
    // React DOM alone is ~190 kB minified; the charts are split into their own chunk.
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` proxies the API to a local Headwater unless VITE_API_URL is set.
    proxy: {
      '^/(?!-/console/)': {
        target: process.env.HEADWATER_URL ?? 'http://127.0.0.1:3000',
        changeOrigin: true,
      },
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
})
