import { defineConfig } from "vite";

// Preact's JSX through Vite's own transform (tsconfig: jsx react-jsx, jsxImportSource
// preact), so no Babel plugin is needed. The build goes into the Python package.
export default defineConfig({
  base: "/",
  build: {
    outDir: "../src/ollm/web/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    assetsInlineLimit: 0, // no data: URLs: the page's CSP allows only this origin
    target: "es2022",
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/v1": "http://127.0.0.1:8000",
    },
  },
});
