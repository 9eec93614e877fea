// /login and /signup: one card with two tabs (arrow keys move between them); the tab follows
// the URL so either can be linked to. On success the app goes to ?next= or the dashboard.

import * as api from '../api.js';
import { h, busy, showMessage, clearMessage, errorText, messageBox } from '../ui.js';

const MIN_PASSWORD = 8;

function field(id, label, input, hint) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('span', { id: `${id}-hint`, class: 'hint' }, hint) : null);
}

export default {
  title: (ctx) => (ctx.path.startsWith('/signup') ? 'Sign up' : 'Sign in'),

  mount(root, ctx) {
    const next = ctx.query.get('next');
    const loginError = messageBox('login-error');
    const signupError = messageBox('signup-error');

    const loginForm = h('form', { id: 'login-form', class: 'tab-panel', role: 'tabpanel', 'aria-labelledby': 'tab-login', 'data-testid': 'login-form', novalidate: true },
      field('login-email', 'Email', h('input', { id: 'login-email', name: 'email', type: 'email', autocomplete: 'username', required: true, 'data-testid': 'login-email' })),
      field('login-password', 'Password', h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' })),
      loginError,
      h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Sign in'),
    );

    const signupForm = h('form', { id: 'signup-form', class: 'tab-panel', role: 'tabpanel', 'aria-labelledby': 'tab-signup', 'data-testid': 'signup-form', novalidate: true },
      field('signup-email', 'Email', h('input', { id: 'signup-email', name: 'email', type: 'email', autocomplete: 'email', required: true, 'data-testid': 'signup-email' })),
      field('signup-name', 'Full name', h('input', { id: 'signup-name', name: 'full_name', type: 'text', autocomplete: 'name', required: true, 'data-testid': 'signup-name' })),
      field('signup-password', 'Password', h('input', {
        id: 'signup-password', name: 'password', type: 'password', autocomplete: 'new-password',
        minlength: String(MIN_PASSWORD), required: true, 'aria-describedby': 'signup-password-hint', 'data-testid': 'signup-password',
      }), `At least ${MIN_PASSWORD} characters.`),
      signupError,
      h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'signup-submit' }, 'Create account'),
    );

    const tabLogin = h('button', { type: 'button', role: 'tab', id: 'tab-login', class: 'tab', 'aria-controls': 'login-form', 'data-testid': 'tab-login' }, 'Sign in');
    const tabSignup = h('button', { type: 'button', role: 'tab', id: 'tab-signup', class: 'tab', 'aria-controls': 'signup-form', 'data-testid': 'tab-signup' }, 'Sign up');

    const select = (which, { focus = true } = {}) => {
      const isLogin = which === 'login';
      tabLogin.setAttribute('aria-selected', String(isLogin));
      tabSignup.setAttribute('aria-selected', String(!isLogin));
      tabLogin.tabIndex = isLogin ? 0 : -1;
      tabSignup.tabIndex = isLogin ? -1 : 0;
      loginForm.hidden = !isLogin;
      signupForm.hidden = isLogin;
      clearMessage(loginError);
      clearMessage(signupError);
      const path = isLogin ? '/login' : '/signup';
      if (location.pathname !== path) history.replaceState(null, '', path + location.search);
      document.title = `${isLogin ? 'Sign in' : 'Sign up'} · ZeroState`;
      if (focus) (isLogin ? tabLogin : tabSignup).focus();
    };
    tabLogin.addEventListener('click', () => select('login'));
    tabSignup.addEventListener('click', () => select('signup'));
    for (const tab of [tabLogin, tabSignup]) {
      tab.addEventListener('keydown', (e) => {
        if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) return;
        e.preventDefault();
        const other = tab === tabLogin ? 'signup' : 'login';
        select(e.key === 'Home' ? 'login' : e.key === 'End' ? 'signup' : other);
      });
    }

    const authenticate = async (form, errorEl, label, call) => {
      clearMessage(errorEl);
      const restore = busy(form.querySelector('button[type="submit"]'), label);
      try {
        const res = await call();
        ctx.signIn(res, next);
      } catch (err) {
        if (!ctx.scope.alive) return;
        showMessage(errorEl, errorText(err));
        restore();
      }
    };

    loginForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const email = loginForm.email.value.trim();
      if (!email || !loginForm.password.value) {
        showMessage(loginError, 'Enter your email and password.');
        (email ? loginForm.password : loginForm.email).focus();
        return;
      }
      authenticate(loginForm, loginError, 'Signing in…', () =>
        api.login({ email, password: loginForm.password.value }));
    });

    signupForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const f = signupForm;
      if (!f.email.value.trim()) {
        showMessage(signupError, 'Enter your email address.');
        f.email.focus();
        return;
      }
      if (f.password.value.length < MIN_PASSWORD) {
        showMessage(signupError, `The password needs at least ${MIN_PASSWORD} characters.`);
        f.password.focus();
        return;
      }
      authenticate(f, signupError, 'Creating account…', () =>
        api.register({ email: f.email.value.trim(), full_name: f.full_name.value.trim(), password: f.password.value }));
    });

    const notice = ctx.notice || (next ? 'Sign in to continue.' : '');
    root.append(h('section', { class: 'auth-wrap', 'aria-labelledby': 'auth-title', 'data-testid': 'auth-section' },
      h('div', { class: 'card auth-card' },
        h('h1', { id: 'auth-title', class: 'gradient-text' }, 'Welcome to ZeroState'),
        h('p', { class: 'muted' }, 'Browse AI agents, hand them tasks and watch the results arrive live — all on your own hardware.'),
        notice ? h('p', { class: 'notice', role: 'status', 'data-testid': 'auth-notice' }, notice) : null,
        h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Account' }, tabLogin, tabSignup),
        loginForm,
        signupForm,
      )));
    select(ctx.path.startsWith('/signup') ? 'signup' : 'login', { focus: false });
    (ctx.path.startsWith('/signup') ? signupForm.email : loginForm.email).focus();
  },
};
