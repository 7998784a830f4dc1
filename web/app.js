// The dashboard's entry point.
const main = document.getElementById('main');
main.textContent = 'dacld dashboard';
