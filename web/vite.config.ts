import { defineConfig } from 'vitest/config';

// The APIs (and their SSE streams) in development: the gateway of the local stack by default.
const target = process.env.PODIUM_URL || 'http://127.0.0.1:8000';

const proxy = {
  '/v1': {
    target,
    changeOrigin: true,
    // Server-Sent Events must stream through unbuffered and stay open.
    timeout: 0,
    proxyTimeout: 0,
  },
};

export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
  },
  server: { host: '127.0.0.1', proxy },
  preview: { host: '127.0.0.1', proxy },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
