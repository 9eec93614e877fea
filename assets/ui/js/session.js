// Who is signed in: the user record the pages read (email, name, role), and the hooks that
// sign in and out. The token itself lives in api.js; app.js decides what happens on sign-out.

import * as api from './api.js';

let user = null;
const changeListeners = new Set();

export const currentUser = () => user;
export const isAdmin = () => user?.role === 'admin';
export const signedIn = () => Boolean(api.getToken());

export function setUser(u) {
  user = u || null;
  for (const fn of changeListeners) fn(user);
}

/** Runs whenever the user record changes (sign-in, profile edit, sign-out). */
export function onUserChange(fn) {
  changeListeners.add(fn);
  return () => changeListeners.delete(fn);
}

/** Store a session answer ({token, user}) of register, login or a password change. */
export function acceptSession(res) {
  if (!res || typeof res.token !== 'string' || !res.token) {
    throw new Error('The server did not return a session. Please try again.');
  }
  api.setToken(res.token);
  setUser(res.user || null);
}

let signOutHandler = () => {};
export function onSignOut(fn) {
  signOutHandler = fn;
}

/**
 * The Sign out buttons: end the session on the server first (its token stops working there
 * too), then here. A server that cannot be reached keeps nobody signed in on this page.
 */
export async function endSession(notice) {
  const token = api.getToken();
  if (token) {
    try {
      await api.logout(token);
    } catch {
      /* signed out here regardless */
    }
  }
  signOut(notice);
}

/** Forget the session here; `notice` is shown on the sign-in page. */
export function signOut(notice) {
  api.clearToken();
  setUser(null);
  signOutHandler(notice);
}
