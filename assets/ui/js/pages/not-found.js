// Any path the router does not know: says so and links back to the dashboard.

import { h } from '../ui.js';

export default {
  title: 'Not found',

  mount(root, ctx) {
    root.append(h('section', { class: 'card narrow', 'data-testid': 'not-found' },
      h('h1', { class: 'gradient-text' }, 'Page not found'),
      h('p', null, 'There is no page at ', h('code', null, ctx.path), '.'),
      h('p', null, h('a', { class: 'btn btn-primary', href: '/' }, 'Go to the dashboard'))));
  },
};
