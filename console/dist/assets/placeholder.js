// PLACEHOLDER: stands in for the console's hashed bundle until the real
// build (`npm run build` in console/) replaces console/dist/.
document.getElementById("app")?.setAttribute("data-placeholder", "true");
