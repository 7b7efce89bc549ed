// A1111-style client script of the test fixture extension: top-level hooks, globals, DOM changes.
window.__fixture = { domContentLoaded: false, loadedCalls: 0, tabs: [], greeting: null, optionsAvailable: 0 };

document.addEventListener("DOMContentLoaded", function () {
  window.__fixture.domContentLoaded = true;
});

onUiLoaded(function () {
  window.__fixture.loadedCalls += 1;
  const marker = document.createElement("div");
  marker.id = "fixture_loaded_marker";
  marker.textContent = "fixture saw " + gradioApp().querySelectorAll("#txt2img_prompt textarea").length + " prompt";
  gradioApp().querySelector("#txt2img_generate").parentElement.appendChild(marker);
});

onUiTabChange(function () {
  window.__fixture.tabs.push(get_uiCurrentTab().textContent.trim());
});

onOptionsAvailable(function () {
  window.__fixture.optionsAvailable += 1;
});

onOptionsChanged(function () {
  window.__fixture.greeting = opts.fixture_greeting;
});

titles["Greet"] = "Say hello with the configured greeting";
