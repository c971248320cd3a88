"use strict";
// commcal export html: the dialog of a chip's deliveries, and the filters. No network, no eval.
(function () {
  const dialog = document.getElementById("detail");
  const title = document.getElementById("detail-title");
  const body = document.getElementById("detail-body");
  const close = document.getElementById("detail-close");
  let opener = null;

  function open(chip) {
    const template = document.getElementById(chip.dataset.group);
    if (!template) return;
    opener = chip;
    title.textContent = template.dataset.title;
    body.replaceChildren(template.content.cloneNode(true));
    const mine = body.querySelector('[data-delivery="' + chip.dataset.delivery + '"]');
    if (mine) mine.classList.add("current");
    dialog.showModal();
    close.focus();
  }

  document.addEventListener("click", function (event) {
    const chip = event.target.closest("button.chip");
    if (chip) open(chip);
  });
  close.addEventListener("click", function () { dialog.close(); });
  // A click on the backdrop (outside the dialog's box) closes it too; Escape is native.
  dialog.addEventListener("click", function (event) {
    if (event.target !== dialog) return;
    const box = dialog.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right &&
      event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close();
  });
  // Tab and Shift+Tab cycle inside the open dialog instead of leaving it for the page behind.
  dialog.addEventListener("keydown", function (event) {
    if (event.key !== "Tab") return;
    const focusable = Array.from(dialog.querySelectorAll("button, a[href], summary"));
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      last.focus();
      event.preventDefault();
    } else if (!event.shiftKey && document.activeElement === last) {
      first.focus();
      event.preventDefault();
    }
  });
  dialog.addEventListener("close", function () {
    body.replaceChildren();
    if (opener) opener.focus();
    opener = null;
  });

  const boxes = Array.from(document.querySelectorAll("input[data-filter]"));
  const items = Array.from(document.querySelectorAll(".chips li"));
  const shown = document.getElementById("shown");
  function apply() {
    const off = { channel: new Set(), calendar: new Set(), kind: new Set() };
    for (const box of boxes) if (!box.checked) off[box.dataset.filter].add(box.value);
    let count = 0;
    for (const li of items) {
      const hide = off.channel.has(li.dataset.channel) || off.calendar.has(li.dataset.calendar) ||
        off.kind.has(li.dataset.kind);
      li.hidden = hide;
      if (!hide) count += 1;
    }
    shown.textContent = count + " of " + items.length + " deliveries shown";
  }
  for (const box of boxes) box.addEventListener("change", apply);
})();
