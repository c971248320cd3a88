"use strict";
// commcal export html: the dialog of a chip's deliveries, and the filters. No network, no eval.
(function () {
  const dialog = document.getElementById("detail");
  const title = document.getElementById("detail-title");
  const body = document.getElementById("detail-body");
  const close = document.getElementById("detail-close");
  let opener = null;

  // The dialogs' data (export_html._Fragments.data); every text goes in through textContent.
  const data = JSON.parse(document.getElementById("commcal-data").textContent);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function term(list, name, value, className) {
    list.append(el("dt", "", name));
    const dd = el("dd", className || "");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    list.append(dd);
    return dd;
  }

  function variant(v, current) {
    const [id, channel, time, due, length, over, recipients, subject, text, html,
      problems, findings, status, media] = v;
    const [name, type, colour] = data.channels[channel];
    const article = el("article", "variant ch-" + colour + (id === current ? " current" : ""));
    article.dataset.delivery = id;
    const head = el("h3");
    const swatch = el("span", "swatch ch-" + colour);
    swatch.setAttribute("aria-hidden", "true");
    head.append(swatch, " " + name + " ", el("span", "type", "(" + type + ")"), " at " + time);
    article.append(head);
    const list = el("dl");
    term(list, "Due", due);
    const size = term(list, "Length", length || "no limit", "length" + (over ? " over" : ""));
    if (over) size.append(" ", el("strong", "", "over the limit"));
    if (recipients) term(list, "Recipients", recipients, "recipients");
    if (status) {
      const [words, url, linked] = status;
      const dd = term(list, "Status", words, "status");
      if (url) {
        dd.append(" · ");
        if (linked) {
          const link = el("a", "", url);
          link.href = url;
          link.rel = "noopener noreferrer";
          dd.append(link);
        } else {
          dd.append(el("code", "", url));
        }
      }
    }
    term(list, "Delivery id", el("code", "", id));
    article.append(list);
    for (const [items, className] of [[problems, "problems"], [findings, "lint-findings"]]) {
      if (!items.length) continue;
      const ul = el("ul", className);
      for (const item of items) ul.append(el("li", "", item));
      article.append(ul);
    }
    if (subject) {
      const line = el("p", "subject");
      line.append(el("strong", "", "Subject:"), " " + subject);
      article.append(line);
    }
    article.append(el("pre", "text", text));
    // Each file: its thumbnail (a data: URI the page carries, never a request) with the alt
    // text as the image's alt attribute and, visible, under it.
    for (const [alt, caption, thumb] of media || []) {
      const figure = el("figure", "media");
      if (thumb.startsWith("data:image/")) {
        const img = document.createElement("img");
        img.src = thumb;
        img.alt = alt;
        figure.append(img);
      }
      const words = el("figcaption");
      words.append(el("span", "alt", alt || "(no alt text)"), el("span", "file", caption));
      figure.append(words);
      article.append(figure);
    }
    if (html) {
      const details = el("details");
      details.append(el("summary", "", "HTML part (source, " + html.length + " characters)"),
        el("pre", "html", html));
      article.append(details);
    }
    return article;
  }

  function open(chip) {
    const group = data.groups[Number(chip.dataset.group)];
    if (!group) return;
    const [heading, kind, calendar, draft, ics, variants] = group;
    opener = chip;
    title.textContent = heading;
    const meta = el("p", "meta", kind + " · calendar " + calendar);
    if (draft) meta.append(" · ", el("strong", "draft", "draft: never published"));
    body.replaceChildren(meta);
    if (ics) {
      const link = el("a", "ics", "Download the invitation (" + ics[0] + ")");
      link.download = ics[0];
      link.href = ics[1];
      const line = el("p");
      line.append(link);
      body.append(line);
    }
    for (const v of variants) body.append(variant(v, chip.dataset.delivery));
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
