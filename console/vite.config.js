// Builds the lab console into the API package (committed there, so the lab needs
// no npm and no network at run time). The API serves it at / and /console/static/.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/static/",
  build: {
    outDir: "../api/console/static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
});
