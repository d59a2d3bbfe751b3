// Writes gpt2_fixture.json: texts and the ids GPT-2's tokenizer gives them,
// as computed by the gpt-3-encoder npm package's own JavaScript encoder.
// Run from the repository root after scripts/fetch-npm-data.sh:
//   node core/text/testdata/make_gpt2_fixture.js
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..', '..', '..');
const { encode } = require(path.join(root, 'third_party/npm/node_modules/gpt-3-encoder'));

const texts = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "I'm sure you've seen it; they'll say we'd done it, isn't it? She's RIGHT.",
  "DON'T SHOUT'S, 'tis the season 'Twas",
  'Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse',
  'Numbers: 0 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-06-01 $19.99 100%',
  'Multiple   spaces    here and a tab\there.',
  'Line one\nLine two\n\nLine four\r\nWindows line\n   indented\n',
  '   leading and trailing spaces   ',
  '\n\n\n',
  ' ',
  '',
  'Punctuation!!! ??? ... ;-) <html><body class="x">&amp;</body></html> a+b=c*d/e',
  'def f(x):\n    return x ** 2  # square\n',
  'café naïve résumé coöperate Ångström façade jalapeño',
  'Zürich Straße Łódź Dvořák Øresund Þórr ÆØÅ æøå',
  'Ελληνικά και Русский язык',
  '日本語のテキストと中文',
  'emoji 😀👍🏽 and symbols © ® ™ € £ ¥ § ¶',
  'superscripts x² y³ fractions ½ ¼ ¾',
  '<|endoftext|>',
  "rock 'n' roll and ''double'' quotes \"like this\"",
  'e-mail: someone@example.com, url: https://example.com/path?q=1&r=2',
  'The State of the Union is strong.  \n\n  Thank you.',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'ALLCAPSWORDSTOGETHER camelCaseIdentifier snake_case_name',
  'tabs\t\tand\t \tmixed \n whitespace',
  'Mr. Smith\'s dog\'s bone',
  '1st 2nd 3rd 4th 21st',
  'It was the best of times, it was the worst of times.',
];

const cases = texts.map(text => ({ text, ids: encode(text) }));
fs.writeFileSync(path.join(__dirname, 'gpt2_fixture.json'),
                 '[\n' + cases.map(c => JSON.stringify(c)).join(',\n') + '\n]\n');
console.log(`wrote ${cases.length} cases`);
