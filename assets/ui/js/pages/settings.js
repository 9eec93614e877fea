// /settings: my profile (email read-only, full name editable, role), password change (which
// answers a new session token: stored, and the live socket reconnects with it), and sign-out.

import * as api from '../api.js';
import * as live from '../live.js';
import * as session from '../session.js';
import {
  h, busy, showMessage, clearMessage, messageBox, actionError, loadError, fmtDateTime, toast,
} from '../ui.js';

const MIN_PASSWORD = 8;

export default {
  title: 'Settings',

  mount(root, { scope }) {
    const email = h('input', { id: 's-email', type: 'email', readonly: true, 'data-testid': 'settings-email', 'aria-describedby': 's-email-hint' });
    const name = h('input', { id: 's-name', type: 'text', autocomplete: 'name', maxlength: '200', 'data-testid': 'settings-name' });
    const role = h('span', { class: 'chip', 'data-testid': 'settings-role' }, '…');
    const since = h('span', { class: 'muted small', 'data-testid': 'settings-since' });
    const profileMsg = messageBox('profile-msg');
    const saveProfile = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'profile-save' }, 'Save profile');

    const current = h('input', { id: 's-current', type: 'password', autocomplete: 'current-password', 'data-testid': 'password-current' });
    const next = h('input', { id: 's-new', type: 'password', autocomplete: 'new-password', minlength: String(MIN_PASSWORD), 'aria-describedby': 's-new-hint', 'data-testid': 'password-new' });
    const confirm = h('input', { id: 's-confirm', type: 'password', autocomplete: 'new-password', 'data-testid': 'password-confirm' });
    const passwordMsg = messageBox('password-msg');
    const savePassword = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'password-save' }, 'Change password');

    const field = (id, label, input, hint) => h('div', { class: 'field' },
      h('label', { for: id }, label), input, hint ? h('span', { id: `${id}-hint`, class: 'hint' }, hint) : null);

    const profileForm = h('form', { 'data-testid': 'profile-form', novalidate: true },
      field('s-email', 'Email', email, 'Your sign-in name; it cannot be changed.'),
      field('s-name', 'Full name', name),
      h('p', { class: 'small' }, 'Role: ', role, ' ', since),
      profileMsg,
      h('div', { class: 'form-actions' }, saveProfile));

    const username = h('input', { type: 'email', autocomplete: 'username', hidden: true, tabindex: '-1', 'aria-hidden': 'true' });
    const passwordForm = h('form', { 'data-testid': 'password-form', novalidate: true },
      username,
      field('s-current', 'Current password', current),
      field('s-new', 'New password', next, `At least ${MIN_PASSWORD} characters. Other sessions are signed out.`),
      field('s-confirm', 'Repeat the new password', confirm),
      passwordMsg,
      h('div', { class: 'form-actions' }, savePassword));

    root.append(
      h('div', { class: 'page-head' }, h('h1', { class: 'gradient-text' }, 'Settings')),
      h('div', { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'p-title' }, h('h2', { id: 'p-title' }, 'Profile'), profileForm),
        h('section', { class: 'card', 'aria-labelledby': 'pw-title' }, h('h2', { id: 'pw-title' }, 'Password'), passwordForm)),
      h('section', { class: 'card', 'aria-labelledby': 'so-title' },
        h('h2', { id: 'so-title' }, 'Session'),
        h('p', { class: 'muted' }, 'Signing out forgets the session in this browser. API keys keep working until you revoke them on the ', h('a', { href: '/api-keys' }, 'API keys'), ' page.'),
        h('button', { type: 'button', class: 'btn btn-ghost', 'data-testid': 'settings-signout', onclick: () => session.endSession('You are signed out.') }, 'Sign out')),
    );

    const fill = (u) => {
      if (!u) return;
      email.value = u.email || '';
      username.value = u.email || '';
      if (document.activeElement !== name) name.value = u.full_name || '';
      role.textContent = u.role || 'user';
      since.textContent = u.created_at ? `· member since ${fmtDateTime(u.created_at)}` : '';
    };
    fill(session.currentUser());
    scope.add(session.onUserChange(fill));
    api.me().then((u) => { if (scope.alive) session.setUser(u); }).catch((err) => {
      if (scope.alive && err.status !== 401) showMessage(profileMsg, loadError('Your profile', err));
    });

    profileForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearMessage(profileMsg);
      const restore = busy(saveProfile, 'Saving…');
      try {
        const u = await api.updateMe({ full_name: name.value.trim() });
        session.setUser(u);
        if (scope.alive) showMessage(profileMsg, 'Profile saved.', 'success');
      } catch (err) {
        if (scope.alive && err.status !== 401) showMessage(profileMsg, actionError('Editing your profile', err));
      } finally {
        restore();
      }
    });

    passwordForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearMessage(passwordMsg);
      if (!current.value) {
        showMessage(passwordMsg, 'Enter your current password.');
        current.focus();
        return;
      }
      if (next.value.length < MIN_PASSWORD) {
        showMessage(passwordMsg, `The new password needs at least ${MIN_PASSWORD} characters.`);
        next.focus();
        return;
      }
      if (next.value !== confirm.value) {
        showMessage(passwordMsg, 'The two new passwords are not the same.');
        confirm.focus();
        return;
      }
      const restore = busy(savePassword, 'Changing…');
      try {
        // The change ends every older session, this socket's too (a 1008 close): pause live
        // updates so that close is not taken for a sign-out elsewhere, and reconnect with
        // the new token afterwards.
        await live.whilePaused(async () => {
          const res = await api.changePassword({ current_password: current.value, new_password: next.value });
          session.acceptSession(res);
        });
        passwordForm.reset();
        if (scope.alive) showMessage(passwordMsg, 'Password changed. Other sessions were signed out.', 'success');
        toast('Password changed.', 'success');
      } catch (err) {
        // A wrong current password is 403, not 401: the session stays.
        if (scope.alive && err.status !== 401) {
          showMessage(passwordMsg, actionError('Changing the password', err));
          (err.code === 'wrong_password' ? current : next).focus();
        }
      } finally {
        restore();
      }
    });
  },
};
