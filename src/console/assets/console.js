// botgate console: copy buttons and reading a chosen key file into the form.
// Everything else works without script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        // No clipboard permission: select the text so Ctrl+C copies it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      const label = button.textContent;
      button.textContent = button.dataset.copied || label;
      button.classList.add("done");
      setTimeout(() => {
        button.textContent = label;
        button.classList.remove("done");
      }, 1500);
    });
  }

  const file = document.getElementById("private_key_file");
  const area = document.getElementById("private_key");
  if (file && area) {
    file.addEventListener("change", () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      if (chosen.size > 64 * 1024) {
        file.value = "";
        return;
      }
      const reader = new FileReader();
      reader.onload = () => {
        area.value = String(reader.result);
        area.dispatchEvent(new Event("input"));
      };
      reader.readAsText(chosen);
    });
  }
});
