// Easel's client-side helpers, injected into the page <head> by modules/ui/mount.py.
// Gradio renders the app after this runs, so everything here uses event delegation on the document.
(function () {
  "use strict";

  function visible(el) {
    return !!el && el.offsetParent !== null;
  }

  // The Generate button of the tab the user is looking at (Text, Image or Extras).
  function activeGenerateButton() {
    const ids = ["txt2img_generate", "img2img_generate", "extras_generate"];
    for (const id of ids) {
      const el = document.getElementById(id);
      if (visible(el)) return el;
    }
    return null;
  }

  // Ctrl+Enter (Cmd+Enter on macOS) generates, as in A1111; Escape leaves a focused prompt alone.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const button = activeGenerateButton();
    if (!button) return;
    event.preventDefault();
    event.stopPropagation();
    button.click();
  }, true);

  // Dropping an image file onto a prompt box sends it to PNG info (read its parameters), as A1111 does.
  document.addEventListener("dragover", function (event) {
    if (event.target && event.target.closest && event.target.closest("#txt2img_prompt, #img2img_prompt")) {
      event.preventDefault();
    }
  });
  document.addEventListener("drop", function (event) {
    const prompt = event.target && event.target.closest && event.target.closest("#txt2img_prompt, #img2img_prompt");
    if (!prompt) return;
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length || !files[0].type.startsWith("image/")) return;
    event.preventDefault();
    const file = files[0];
    const tabButton = Array.from(document.querySelectorAll("#tabs button[role=tab]"))
      .find((b) => b.textContent.trim() === "PNG info");
    if (tabButton) tabButton.click();
    // Gradio renders a tab's children when it is first shown: wait for the upload input to exist.
    let tries = 0;
    const timer = setInterval(function () {
      const input = document.querySelector("#pnginfo_image input[type=file]");
      if (!input && ++tries < 20) return;
      clearInterval(timer);
      if (!input) return;
      const transfer = new DataTransfer();
      transfer.items.add(file);
      input.files = transfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }, 150);
  });

  window.easel = { activeGenerateButton: activeGenerateButton };
})();
