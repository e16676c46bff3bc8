/* Click (or Enter) on a figure of the book opens it full size in an overlay; a click, Escape or the
   close button closes it. Offline, no dependencies. Contract (checked by the browser test):
   every `figure img` gets the class `rlvr-enlargeable` and `data-enlarge` = its full-size URL;
   the overlay is `div.rlvr-figure-overlay[role=dialog]` holding `img.rlvr-figure-full`. */
(function () {
  "use strict";

  function close(overlay, opener) {
    overlay.remove();
    document.body.classList.remove("rlvr-overlay-open");
    if (opener) opener.focus();
  }

  function open(img) {
    var overlay = document.createElement("div");
    overlay.className = "rlvr-figure-overlay";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute("aria-label", "Figure, full size: " + (img.alt || ""));
    var button = document.createElement("button");
    button.type = "button";
    button.className = "rlvr-figure-close";
    button.setAttribute("aria-label", "Close the full-size figure");
    button.textContent = "\u00d7";
    var full = document.createElement("img");
    full.className = "rlvr-figure-full";
    full.src = img.getAttribute("data-enlarge");
    full.alt = img.alt;
    overlay.appendChild(button);
    overlay.appendChild(full);
    overlay.addEventListener("click", function () { close(overlay, img); });
    overlay.addEventListener("keydown", function (event) {
      if (event.key === "Escape") close(overlay, img);
    });
    document.body.appendChild(overlay);
    document.body.classList.add("rlvr-overlay-open");
    button.focus();
  }

  function init() {
    var images = document.querySelectorAll("figure img");
    images.forEach(function (img) {
      if (img.classList.contains("rlvr-enlargeable")) return;
      img.classList.add("rlvr-enlargeable");
      img.setAttribute("data-enlarge", img.currentSrc || img.src);
      img.setAttribute("tabindex", "0");
      img.setAttribute("role", "button");
      img.setAttribute("title", "Click to enlarge");
      img.addEventListener("click", function () { open(img); });
      img.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          open(img);
        }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
