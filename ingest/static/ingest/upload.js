/* The import page, enhanced: drag and drop onto the file chooser (which
   keeps working on its own, by mouse and keyboard, without this script),
   a list of the chosen files with their sizes checked against the limits,
   and, on a batch page with work in the background, its progress followed
   until the work is done. No build step, no dependencies. */
(function () {
    "use strict";

    function sizeText(bytes) {
        // As Django's filesizeformat writes it: 1.0 KB, 20.0 MB, 1.0 GB.
        var units = ["bytes", "KB", "MB", "GB", "TB"];
        if (bytes < 1024) {
            return bytes + (bytes === 1 ? " byte" : " bytes");
        }
        var value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.length - 1) {
            value /= 1024;
            unit += 1;
        }
        return value.toFixed(1) + " " + units[unit];
    }

    var SUFFIXES = [".csv.gz", ".parquet", ".csv"];

    function focusType(name) {
        var lower = name.toLowerCase();
        return SUFFIXES.some(function (suffix) {
            return lower.slice(-suffix.length) === suffix;
        });
    }

    function setupUpload(form) {
        var input = form.querySelector("input[type=file]");
        var zone = document.getElementById("ocb-dropzone");
        var chosen = document.getElementById("ocb-chosen");
        var status = document.getElementById("ocb-upload-status");
        var submit = document.getElementById("ocb-upload-submit");
        var maxFile = parseInt(form.dataset.maxFile, 10);
        var maxRequest = parseInt(form.dataset.maxRequest, 10);

        function problems() {
            var found = [];
            var total = 0;
            Array.prototype.forEach.call(input.files, function (file) {
                total += file.size;
                if (file.size > maxFile) {
                    found.push(file.name + " is larger than the limit of " + form.dataset.maxFileText + " per file.");
                }
            });
            if (total > maxRequest) {
                found.push("Together the files are larger than the limit of " + form.dataset.maxRequestText + " per upload; upload fewer at a time.");
            }
            return found;
        }

        function render() {
            chosen.textContent = "";
            var files = Array.prototype.slice.call(input.files);
            if (!files.length) {
                return;
            }
            var total = files.reduce(function (sum, file) { return sum + file.size; }, 0);
            var summary = document.createElement("p");
            summary.textContent = files.length + (files.length === 1 ? " file" : " files") + " chosen (" + sizeText(total) + "):";
            var list = document.createElement("ul");
            files.forEach(function (file) {
                var item = document.createElement("li");
                item.textContent = file.name + " (" + sizeText(file.size) + ")";
                var note = "";
                if (file.size > maxFile) {
                    note = " larger than the limit of " + form.dataset.maxFileText;
                } else if (!focusType(file.name)) {
                    note = " not a .csv, .csv.gz or .parquet file: it will be refused";
                }
                if (note) {
                    var warning = document.createElement("span");
                    warning.className = "ocb-too-big";
                    warning.textContent = " —" + note;
                    item.appendChild(warning);
                }
                list.appendChild(item);
            });
            chosen.appendChild(summary);
            chosen.appendChild(list);
        }

        function addFiles(dropped) {
            // Files dropped are added to those already chosen.
            var transfer;
            try {
                transfer = new DataTransfer();
            } catch (error) {
                return false;
            }
            var seen = {};
            Array.prototype.forEach.call(input.files, function (file) {
                seen[file.name + "/" + file.size] = true;
                transfer.items.add(file);
            });
            Array.prototype.forEach.call(dropped, function (file) {
                if (!seen[file.name + "/" + file.size]) {
                    transfer.items.add(file);
                }
            });
            input.files = transfer.files;
            return true;
        }

        function hasFiles(event) {
            var types = event.dataTransfer && event.dataTransfer.types;
            return types && Array.prototype.indexOf.call(types, "Files") !== -1;
        }

        ["dragenter", "dragover"].forEach(function (name) {
            zone.addEventListener(name, function (event) {
                if (!hasFiles(event)) {
                    return;
                }
                event.preventDefault();
                event.dataTransfer.dropEffect = "copy";
                zone.classList.add("ocb-dragover");
            });
        });
        ["dragleave", "dragend"].forEach(function (name) {
            zone.addEventListener(name, function (event) {
                if (event.target === zone) {
                    zone.classList.remove("ocb-dragover");
                }
            });
        });
        zone.addEventListener("drop", function (event) {
            if (!hasFiles(event)) {
                return;
            }
            event.preventDefault();
            zone.classList.remove("ocb-dragover");
            if (addFiles(event.dataTransfer.files)) {
                render();
                input.focus();
            }
        });
        // A file dropped next to the zone must not replace the page with its contents.
        ["dragover", "drop"].forEach(function (name) {
            window.addEventListener(name, function (event) {
                if (hasFiles(event) && !zone.contains(event.target)) {
                    event.preventDefault();
                }
            });
        });

        input.addEventListener("change", render);
        render();

        form.addEventListener("submit", function (event) {
            var found = problems();
            if (found.length) {
                event.preventDefault();
                status.textContent = found.join(" ");
                status.className = "errornote";
                input.focus();
                return;
            }
            var count = input.files.length;
            if (!count) {
                return;
            }
            var total = Array.prototype.reduce.call(input.files, function (sum, file) { return sum + file.size; }, 0);
            status.className = "";
            status.textContent = "Uploading " + count + (count === 1 ? " file" : " files") + " (" + sizeText(total) + "), then previewing. Keep this page open.";
            window.setTimeout(function () { submit.disabled = true; }, 0);
        });
    }

    function setupBatch(form) {
        if (form.dataset.busy !== "true") {
            return;
        }
        var url = form.dataset.statusUrl;
        var delay = 1500;

        function poll() {
            fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
                .then(function (response) {
                    if (!response.ok) {
                        throw new Error(response.status);
                    }
                    return response.json();
                })
                .then(function (data) {
                    var changed = !data.busy;
                    data.uploads.forEach(function (upload) {
                        var section = form.querySelector("[data-upload='" + upload.id + "']");
                        // A new state (queued -> running -> done) brings other buttons: reload.
                        if (!section || section.dataset.status !== upload.status ||
                                section.dataset.label !== upload.label) {
                            changed = true;
                            return;
                        }
                        var bar = document.getElementById("u" + upload.id + "-progress");
                        var text = document.getElementById("u" + upload.id + "-percent");
                        var read = document.getElementById("u" + upload.id + "-read");
                        if (bar && upload.percent !== null) {
                            bar.value = upload.percent;
                            bar.textContent = upload.percent + "%";
                            text.textContent = upload.percent + "%";
                        }
                        if (read) {
                            read.textContent = upload.progress;
                        }
                    });
                    if (changed) {
                        window.location.reload();
                        return;
                    }
                    delay = 1500;
                    window.setTimeout(poll, delay);
                })
                .catch(function () {
                    delay = Math.min(delay * 2, 30000);
                    window.setTimeout(poll, delay);
                });
        }

        window.setTimeout(poll, delay);
    }

    document.addEventListener("DOMContentLoaded", function () {
        var upload = document.getElementById("ocb-upload-form");
        if (upload) {
            setupUpload(upload);
        }
        var batch = document.getElementById("ocb-batch");
        if (batch) {
            setupBatch(batch);
        }
    });
})();
