/* A call's recording player (dashboard call page and admin): clicking a line of the conversation plays the
   recording from that line's moment (its t_ms, milliseconds since the call started). */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var audio = document.getElementById("vo-recording");
    if (!audio) return;
    document.addEventListener("click", function (event) {
      if (event.target.closest("details, a, button")) return;  // their own clicks (event details, links)
      var line = event.target.closest(".vo-transcript li");
      var moment = line && line.querySelector("time[data-t-ms]");
      if (!moment) return;
      audio.currentTime = Number(moment.getAttribute("data-t-ms")) / 1000;
      audio.play().catch(function () { /* playback refused (autoplay policy): the position is set */ });
    });
    document.querySelectorAll(".vo-transcript time[data-t-ms]").forEach(function (moment) {
      var line = moment.closest("li");
      line.classList.add("vo-seekable");
      line.title = "Play the recording from here";
    });
  });
})();
