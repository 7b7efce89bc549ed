// What popular A1111 extensions read from the page once it has loaded: the release in the footer's first
// version link, the gallery globals, and the output panels' button rows (they clone a button into each).
onUiLoaded(function () {
  const link = gradioApp().querySelector("#footer .versions a");
  window.__page = {
    version: link ? link.innerHTML : null,
    txt2imgGallery: typeof txt2img_gallery !== "undefined" && txt2img_gallery ? txt2img_gallery.id : null,
    img2imgGallery: typeof img2img_gallery !== "undefined" && img2img_gallery ? img2img_gallery.id : null,
  };
  ["txt2img", "img2img", "extras"].forEach(function (tab) {
    const existing = gradioApp().querySelector("#image_buttons_" + tab + " button");
    const clone = existing.cloneNode(true);
    clone.id = "fixture_clone_" + tab;
    clone.textContent = "fixture " + tab;
    existing.parentNode.appendChild(clone);
  });
});
