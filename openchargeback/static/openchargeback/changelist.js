'use strict';
// List pages: Django's nav sidebar starts folded so the columns get the width.
// Django keeps one "sidebar open" choice for all pages; lists keep their own
// (ocb.listNavOpen) and leave Django's as it was. Runs after nav_sidebar.js
// (both deferred, in document order). Without scripts the sidebar stays folded.
{
    const main = document.getElementById('main');
    const toggle = document.getElementById('toggle-nav-sidebar');
    const sidebar = document.getElementById('nav-sidebar');
    if (main && toggle && sidebar) {
        const djangoKey = 'django.admin.navSidebarIsOpen';
        const djangoChoice = localStorage.getItem(djangoKey);
        const show = function(open) {
            main.classList.toggle('shifted', open);
            sidebar.setAttribute('aria-expanded', String(open));
        };
        show(localStorage.getItem('ocb.listNavOpen') === 'true');
        // Django's own handler runs first and flips the class; record the outcome.
        toggle.addEventListener('click', function() {
            const open = main.classList.contains('shifted');
            show(open);
            localStorage.setItem('ocb.listNavOpen', String(open));
            if (djangoChoice === null) {
                localStorage.removeItem(djangoKey);
            } else {
                localStorage.setItem(djangoKey, djangoChoice);
            }
        });
    }
    // Cells cut to their column's width show the whole text on hover.
    document.querySelectorAll('#result_list td, #result_list th').forEach(function(cell) {
        if (!cell.title && cell.scrollWidth > cell.clientWidth + 1) {
            cell.title = cell.textContent.trim();
        }
    });
}
