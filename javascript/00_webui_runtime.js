// The browser runtime A1111-style extensions call: gradioApp(), the onUi* hooks, opts, titles, tab helpers.
// Injected first into the page <head> (modules/ui/page.py), before every other client script, so that scripts
// loaded after it can register hooks at their top level and listen for DOMContentLoaded.
// Names and call semantics follow the A1111 web UI's public JavaScript surface; the code is Easel's own.
/* exported gradioApp, onUiLoaded, onUiUpdate, onAfterUiUpdate, onUiTabChange, onOptionsChanged,
   onOptionsAvailable, executeCallbacks, get_uiCurrentTab, get_uiCurrentTabContent, uiElementIsVisible,
   uiElementInSight, updateInput, switch_to_txt2img, switch_to_img2img, switch_to_sketch, switch_to_inpaint,
   switch_to_extras, get_tab_index, submit, submit_img2img, randomId, args_to_array, localSet, localGet,
   localRemove, getTranslation, selected_gallery_index, selected_gallery_button, all_gallery_buttons, titles,
   localization, opts, uiCurrentTab, restart_reload, onEdit, create_submit_args, get_img2img_tab_index,
   txt2img_gallery, img2img_gallery */

var opts = {};
var titles = {};
var localization = window.localization || {};  // set in the page head before this script runs
var uiCurrentTab = null;
// A1111's handles on the output galleries' elements (#txt2img_gallery, #img2img_gallery), set once the UI exists
var txt2img_gallery;
var img2img_gallery;

// Selectors written against Gradio 3's DOM, rewritten for Gradio 6's: a textbox's <textarea>/<input> used to be
// a child of its <label>, and now sits one level deeper (label > .input-container > textarea).
function easelGradio3Selector(selector) {
  return typeof selector === "string" ? selector.replace(/>\s*label\s*>\s*(textarea|input)/g, "> label $1") : selector;
}

// The element that holds the app: A1111 extensions query everything through it.
function gradioApp() {
  const apps = document.getElementsByTagName("gradio-app");
  const app = apps.length ? apps[0] : document;
  if (app !== document && !app.easelQueries) {
    app.easelQueries = true;
    app.getElementById = function (id) { return document.getElementById(id); };
    app.querySelector = function (selector) {
      return Element.prototype.querySelector.call(this, easelGradio3Selector(selector));
    };
    app.querySelectorAll = function (selector) {
      return Element.prototype.querySelectorAll.call(this, easelGradio3Selector(selector));
    };
  }
  return app.shadowRoot ? app.shadowRoot : app;
}

var uiUpdateCallbacks = [];
var uiAfterUpdateCallbacks = [];
var uiLoadedCallbacks = [];
var uiTabChangeCallbacks = [];
var optionsChangedCallbacks = [];
var optionsAvailableCallbacks = [];

function onUiUpdate(callback) { uiUpdateCallbacks.push(callback); }
function onAfterUiUpdate(callback) { uiAfterUpdateCallbacks.push(callback); }
function onUiLoaded(callback) { uiLoadedCallbacks.push(callback); }
function onUiTabChange(callback) { uiTabChangeCallbacks.push(callback); }
function onOptionsChanged(callback) { optionsChangedCallbacks.push(callback); }
function onOptionsAvailable(callback) {
  // Late registrations still get called once the options are known (A1111 does the same).
  if (easelRuntime.optionsKnown) { executeCallbacks([callback]); return; }
  optionsAvailableCallbacks.push(callback);
}

// Every callback runs isolated: one extension's error is logged and the others still run.
function executeCallbacks(queue, arg) {
  for (const callback of queue) {
    try {
      callback(arg);
    } catch (error) {
      console.error("error running callback", callback, ":", error);
    }
  }
}

var easelRuntime = {
  loaded: false,
  premounting: false,
  timings: {},
  optionsKnown: false,
  afterUpdateTimer: null,
  observer: null,
};

// The top-level tab bar of #tabs: its own buttons, not those of nested tab groups or gradio's hidden copy.
function easelTopTabButtons() {
  const tabs = gradioApp().querySelector("#tabs");
  if (!tabs) return [];
  return Array.from(tabs.querySelectorAll("button[role=tab]")).filter(function (button) {
    return button.closest(".tabs") === tabs && !button.closest(".visually-hidden");
  });
}

function get_uiCurrentTab() {
  return easelTopTabButtons().find(function (b) {
    return b.getAttribute("aria-selected") === "true" || b.classList.contains("selected");
  }) || null;
}

function get_uiCurrentTabContent() {
  const tabs = gradioApp().querySelector("#tabs");
  if (!tabs) return null;
  const items = Array.from(tabs.querySelectorAll(".tabitem[id^=tab_]")).filter(function (item) {
    return item.closest(".tabs") === tabs;
  });
  return items.find(function (item) { return item.style.display !== "none" && item.offsetParent !== null; }) ||
    items.find(function (item) { return item.style.display !== "none"; }) || null;
}

function uiElementIsVisible(el) {
  if (el === document) return true;
  const style = window.getComputedStyle(el);
  const shown = style.display !== "none";
  if (!shown || !el.parentNode) return false;
  return el.parentNode === document || el.parentNode.nodeType === 11 || uiElementIsVisible(el.parentNode);
}

function uiElementInSight(el) {
  const rect = el.getBoundingClientRect();
  return rect.top < window.innerHeight && rect.bottom >= 0;
}

// Tells gradio that a value set from JavaScript changed, so the Python side sees it.
function updateInput(target) {
  const event = new Event("input", { bubbles: true });
  Object.defineProperty(event, "target", { value: target });
  target.dispatchEvent(event);
}

function easelSelectTab(label, elemId) {
  const buttons = easelTopTabButtons();
  const byId = buttons.find(function (b) { return b.id === elemId + "-button" || b.getAttribute("aria-controls") === elemId; });
  const button = byId || buttons.find(function (b) { return b.textContent.trim() === label; });
  if (button) button.click();
}

function switch_to_txt2img() { easelSelectTab("Text", "tab_txt2img"); return Array.from(arguments); }
function switch_to_img2img_tab(no) {
  easelSelectTab("Image", "tab_img2img");
  const modes = Array.from(gradioApp().querySelectorAll("#mode_img2img button[role=tab]"))
    .filter(function (b) { return !b.closest(".visually-hidden"); });
  if (modes[no]) modes[no].click();
}
function switch_to_img2img() { switch_to_img2img_tab(0); return Array.from(arguments); }
function switch_to_sketch() { switch_to_img2img_tab(1); return Array.from(arguments); }
function switch_to_inpaint() { switch_to_img2img_tab(2); return Array.from(arguments); }
function switch_to_extras() { easelSelectTab("Extras", "tab_extras"); return Array.from(arguments); }

function get_tab_index(tabId) {
  const buttons = Array.from(gradioApp().querySelectorAll("#" + tabId + " button[role=tab]"))
    .filter(function (b) { return !b.closest(".visually-hidden"); });
  return Math.max(0, buttons.findIndex(function (b) { return b.getAttribute("aria-selected") === "true"; }));
}
function get_img2img_tab_index() { return [get_tab_index("mode_img2img"), ...Array.from(arguments).slice(1)]; }

function randomId() {
  return "task(" + Math.random().toString(36).slice(2, 9) + Math.random().toString(36).slice(2, 9) + ")";
}
function args_to_array(args) { return Array.from(args); }
function create_submit_args(args) { return Array.from(args); }
// A1111 binds these to its Generate buttons as `_js`; Easel's buttons need no task id, so they pass the
// arguments through (an extension that calls them as a pass-through keeps working).
function submit() { return Array.from(arguments); }
function submit_img2img() { return Array.from(arguments); }

function localSet(key, value) { try { localStorage[key] = value; } catch (e) { /* storage may be off */ } }
function localGet(key, fallback) { try { return key in localStorage ? localStorage[key] : fallback; } catch (e) { return fallback; } }
function localRemove(key) { try { delete localStorage[key]; } catch (e) { /* storage may be off */ } }

function getTranslation(text) { return localization[text] !== undefined ? localization[text] : undefined; }

function all_gallery_buttons() {
  const tab = get_uiCurrentTabContent();
  if (!tab) return [];
  return Array.from(tab.querySelectorAll("[id$=_gallery] .thumbnail-item, [id$=_gallery] button.thumbnail-item"));
}
function selected_gallery_button() {
  return all_gallery_buttons().find(function (b) { return b.classList.contains("selected"); }) || null;
}
function selected_gallery_index() {
  return all_gallery_buttons().findIndex(function (b) { return b.classList.contains("selected"); });
}

function restart_reload() {
  document.body.style.opacity = "0.5";
  const tryReload = function () {
    fetch(window.location.href, { method: "HEAD" }).then(function (r) {
      if (r.ok) window.location.reload(); else setTimeout(tryReload, 1000);
    }).catch(function () { setTimeout(tryReload, 1000); });
  };
  setTimeout(tryReload, 1000);
  return [];
}

// Calls func after the user stopped editing elem for afterMs (A1111's onEdit helper).
function onEdit(editId, elem, afterMs, func) {
  let timer = null;
  const handler = function () {
    clearTimeout(timer);
    timer = setTimeout(func, afterMs);
  };
  elem.addEventListener("input", handler);
  return handler;
}

// Options: the server writes the current values into the page; the Settings page and the quick-settings bar
// hand the new values over after each change (modules/ui/page.py, modules/ui/mount.py). As in A1111, `opts`
// stays empty until the UI has loaded (extension scripts wait for it to fill before they look for elements).
var easelPendingOptions = {};

function easelSetOptions(values) {
  if (typeof values === "string") {
    if (!values) return;
    try { values = JSON.parse(values); } catch (e) { console.error("options JSON unreadable", e); return; }
  }
  if (!values || typeof values !== "object") return;
  if (!easelRuntime.optionsKnown) { Object.assign(easelPendingOptions, values); return; }
  Object.keys(values).forEach(function (key) { opts[key] = values[key]; });
  executeCallbacks(optionsChangedCallbacks);
}

function easelAnnounceOptions() {
  if (easelRuntime.optionsKnown || !easelRuntime.loaded) return;
  easelRuntime.optionsKnown = true;
  Object.assign(opts, easelPendingOptions);
  executeCallbacks(optionsAvailableCallbacks);
  executeCallbacks(optionsChangedCallbacks);
  // Extension scripts watch the page with their own MutationObservers (or onUiUpdate) and check `opts` when
  // something changes; the page may be idle by now, so one element is added to tell them to look again.
  const marker = document.createElement("span");
  marker.id = "easel_options_ready";
  marker.hidden = true;
  gradioApp().appendChild(marker);
}

if (window.__easel_options) easelSetOptions(window.__easel_options);

// Hover hints: titles[label] becomes the element's tooltip (extensions add their own entries to `titles`).
// Localization (the `localization` setting; window.localization is written into the page head): texts, input
// placeholders and hover titles whose whole text has a translation are shown translated. What users type and
// what the server writes (prompts, infotexts, HTML of extensions' results) is left alone.
var easelNoTranslate = "textarea, script, style, [contenteditable], .easel-infotext, " +
  "#txt2img_gallery, #img2img_gallery, #extras_gallery";

function easelHasTranslations() {
  for (const key in localization) { if (Object.prototype.hasOwnProperty.call(localization, key)) return true; }
  return false;
}

function easelTranslateText(node) {
  const parent = node.parentElement;
  if (!parent || parent.closest(easelNoTranslate)) return;
  const text = node.nodeValue;
  const key = text.trim();
  if (!key || !Object.prototype.hasOwnProperty.call(localization, key)) return;
  if (parent.childElementCount === 0 && parent.textContent.trim() === key && parent.dataset.easelOriginal === undefined) {
    parent.dataset.easelOriginal = key;  // hover titles are looked up by the English text
  }
  node.nodeValue = text.replace(key, localization[key]);
}

function easelTranslate(root) {
  if (!root || !easelHasTranslations()) return;
  if (root.nodeType === Node.TEXT_NODE) { easelTranslateText(root); return; }
  if (root.nodeType !== Node.ELEMENT_NODE) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  texts.forEach(easelTranslateText);
  const elements = [root, ...root.querySelectorAll("[placeholder], [title]")];
  elements.forEach(function (el) {
    if (!el.closest || el.closest("script, style")) return;
    ["placeholder", "title"].forEach(function (attr) {
      const value = el.getAttribute && el.getAttribute(attr);
      if (value && Object.prototype.hasOwnProperty.call(localization, value.trim())) {
        el.setAttribute(attr, localization[value.trim()]);
      }
    });
  });
}

function easelApplyTitles(root) {
  root.querySelectorAll("span, button, select, p, label > span").forEach(function (el) {
    if (el.title && el.dataset.easelTitle === undefined) return;
    const text = el.dataset.easelOriginal !== undefined ? el.dataset.easelOriginal : (el.textContent || "").trim();
    const tip = titles[text] || (el.value !== undefined && titles[el.value]);
    if (tip) {
      const translated = localization[tip] || tip;
      if (el.title !== translated) el.title = translated;
      el.dataset.easelTitle = "";
    }
  });
}

Object.assign(titles, {
  "Sampling steps": "How many times the image is refined; more steps take longer",
  "Sampling method": "The algorithm that removes the noise step by step",
  "Batch count": "How many batches to make, one after another",
  "Batch size": "How many images to make at once",
  "CFG Scale": "How strongly the image follows the prompt; lower values give the model more freedom",
  "Seed": "The random number the image starts from: the same seed and settings give the same image",
  "Denoising strength": "How much the image may change: 0 keeps it, 1 replaces it",
  "Interrupt": "Stop now and keep the images made so far",
  "Skip": "Skip the current image and go on with the next",
  "Generate": "Make images (Ctrl+Enter)",
  "🎲": "Random seed (-1)",
  "♻️": "Reuse the seed of the selected image",
  "⇅": "Swap width and height",
  "Apply settings": "Save the changed settings",
});

function easelAfterUiUpdate() {
  easelRuntime.afterUpdateTimer = null;
  easelAnnounceOptions();
  easelApplyTitles(gradioApp());
  if (easelRuntime.loaded) easelGalleryGlobals();
  executeCallbacks(uiAfterUpdateCallbacks);
}

// Gradio 6 creates a tab's elements only when the tab is first shown, where Gradio 3 put the whole page in
// the document at once; A1111 extension scripts look up elements of every tab as soon as the UI has loaded.
// So, once the first tab is there, every top-level tab is shown once (then the first one again), and the UI
// counts as loaded when all of them exist.
var easelLoadedSentinels = ["#txt2img_prompt textarea", "#txt2img_generate"];

function easelUiLoaded() {
  if (easelRuntime.loaded) return;
  easelRuntime.loaded = true;
  easelRuntime.premounting = false;
  easelRuntime.timings.loaded = performance.now();
  easelGalleryGlobals();
  executeCallbacks(uiLoadedCallbacks);
  easelCheckTab();
  if (!easelRuntime.afterUpdateTimer) easelRuntime.afterUpdateTimer = setTimeout(easelAfterUiUpdate, 200);
}

function easelGalleryGlobals() {
  const attached = function (el) { return el && el.isConnected; };
  if (!attached(txt2img_gallery)) txt2img_gallery = gradioApp().querySelector("#txt2img_gallery") || undefined;
  if (!attached(img2img_gallery)) img2img_gallery = gradioApp().querySelector("#img2img_gallery") || undefined;
}

function easelCheckTab() {
  if (!easelRuntime.loaded) return;
  const tab = get_uiCurrentTab();
  if (tab && tab !== uiCurrentTab) {
    uiCurrentTab = tab;
    executeCallbacks(uiTabChangeCallbacks);
  }
}

function easelWaitFor(check, timeoutMs) {
  return new Promise(function (resolve) {
    const started = performance.now();
    (function poll() {
      if (check() || performance.now() - started > timeoutMs) { resolve(); return; }
      setTimeout(poll, 25);
    })();
  });
}

function easelOwnTabButtons(tabs) {
  return Array.from(tabs.querySelectorAll("button[role=tab]")).filter(function (button) {
    return button.closest(".tabs") === tabs && !button.closest(".visually-hidden");
  });
}

function easelPanelEmpty(button) {
  const panel = button.getAttribute("aria-controls");
  const item = panel && document.getElementById(panel);
  return !item || !item.querySelector(".block, input, textarea, button");
}

// Shows each tab of one tab group once, then the one that was selected.
async function easelMountTabGroup(buttons) {
  const first = buttons.find(function (b) { return b.getAttribute("aria-selected") === "true"; }) || buttons[0];
  let clicked = false;
  for (const button of buttons) {
    if (button === first || button.disabled || !easelPanelEmpty(button)) continue;
    clicked = true;
    button.click();
    await easelWaitFor(function () { return !easelPanelEmpty(button); }, 5000);
  }
  if (clicked && first) {
    first.click();
    await easelWaitFor(function () { return first.getAttribute("aria-selected") === "true"; }, 3000);
  }
}

// Tab groups inside tabs (and tabs that appear once those are shown): a few rounds, each showing only the
// tabs whose panels are still empty.
async function easelMountNestedTabs() {
  for (let round = 0; round < 3; round++) {
    const groups = Array.from(gradioApp().querySelectorAll(".tabs")).filter(function (tabs) {
      return tabs.id !== "tabs" && easelOwnTabButtons(tabs).some(easelPanelEmpty);
    });
    if (!groups.length) return;
    for (const tabs of groups) await easelMountTabGroup(easelOwnTabButtons(tabs));
  }
}

async function easelMountAllTabs() {
  const buttons = easelTopTabButtons();
  const first = get_uiCurrentTab() || buttons[0];
  for (const button of buttons) {
    if (button === first || button.disabled) continue;
    const panel = button.getAttribute("aria-controls");
    button.click();
    await easelWaitFor(function () {
      const item = panel && gradioApp().querySelector("#" + CSS.escape(panel));
      return item && item.children.length > 0;
    }, 3000);
  }
  if (first) first.click();
  await easelWaitFor(function () { return get_uiCurrentTab() === first; }, 3000);
}

// Closed accordions keep their elements out of the page in Gradio 6 too: each is opened once and closed again
// (nested ones appear when their parent opens, hence a few rounds).
function easelUnmountedAccordions() {
  return Array.from(gradioApp().querySelectorAll(".gradio-accordion > button.label-wrap")).filter(function (b) {
    const content = b.parentElement.querySelector(":scope > [data-testid=accordion-content]");
    return content && content.style.display === "none" && !content.querySelector(".block, input, textarea, button");
  });
}

async function easelMountAccordions() {
  for (let round = 0; round < 4; round++) {
    const closed = easelUnmountedAccordions();
    if (!closed.length) return;
    closed.forEach(function (button) { button.click(); });
    await easelWaitFor(function () {
      return closed.every(function (b) {
        const content = b.parentElement.querySelector(":scope > [data-testid=accordion-content]");
        return content && content.style.display !== "none";
      });
    }, 3000);
    await new Promise(function (resolve) { setTimeout(resolve, 50); });
    closed.forEach(function (button) { button.click(); });
  }
}

function easelCheckLoaded() {
  if (easelRuntime.loaded || easelRuntime.premounting) return;
  const app = gradioApp();
  if (!easelLoadedSentinels.every(function (selector) { return app.querySelector(selector); })) return;
  easelRuntime.premounting = true;
  easelRuntime.timings.firstTab = performance.now();
  easelMountAllTabs().then(easelMountNestedTabs)
    .then(function () { easelRuntime.timings.tabs = performance.now(); return easelMountAccordions(); })
    .then(easelMountNestedTabs)
    .catch(function (error) { console.error("showing the tabs failed", error); })
    .then(easelUiLoaded);
}

function easelOnMutation(mutations) {
  if (easelHasTranslations()) {
    mutations.forEach(function (mutation) { mutation.addedNodes.forEach(easelTranslate); });
  }
  easelCheckLoaded();
  executeCallbacks(uiUpdateCallbacks, mutations);
  if (easelRuntime.afterUpdateTimer) clearTimeout(easelRuntime.afterUpdateTimer);
  easelRuntime.afterUpdateTimer = setTimeout(easelAfterUiUpdate, 200);
  easelCheckTab();
}

document.addEventListener("DOMContentLoaded", function () {
  easelTranslate(document.body);
  easelRuntime.observer = new MutationObserver(easelOnMutation);
  easelRuntime.observer.observe(gradioApp(), { childList: true, subtree: true });
});

window.easelRuntime = easelRuntime;
window.easelSetOptions = easelSetOptions;
